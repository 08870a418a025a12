"""Read the official ``.tar.gz`` archives without extracting them, and extract them safely.

A tar archive can hold members named ``/etc/passwd`` or ``../../.bashrc``; extracting such an archive
naively writes outside the target folder. This module never calls :meth:`tarfile.TarFile.extractall`:
it walks the archive once, rejects the whole archive if any member has an absolute path or a ``..``
component, and reads only the members it expects by their exact names (``cifar-10-batches-bin/
data_batch_1.bin`` ...), which must be regular files of a sane size.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from eca_ref.data.faults import io_error, memory_error
from eca_ref.errors import DataError

#: Largest member read into memory. Official batches are about 31 MB; this guards against a member
#: that claims gigabytes (a decompression bomb).
MAX_MEMBER_BYTES = 256 * 1024 * 1024


def check_member_name(name: str, where: str) -> None:
    """Reject absolute paths, ``..`` components and Windows drive/backslash tricks."""
    p = PurePosixPath(name)
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or p.is_absolute():
        raise DataError(f"{where}: unsafe archive: member {name!r} has an absolute path; refusing to read it")
    if ".." in p.parts or ".." in name.split("\\"):
        raise DataError(f"{where}: unsafe archive: member {name!r} points outside the archive (..); "
                        "refusing to read it")


def iter_archive(path: Path, wanted: Iterable[str], sizes: dict | None = None) -> Iterator[tuple[str, bytes]]:
    """Walk ``path`` once; check every member's name; yield ``(name, bytes)`` of the wanted members.

    ``sizes``, if given, receives ``{name: bytes}`` of every regular member (from the tar headers).
    Raises DataError for a corrupt/truncated archive, an unsafe member name anywhere in it, a wanted
    member that is not a regular file, or one larger than :data:`MAX_MEMBER_BYTES`; DataIOError
    (:mod:`eca_ref.data.faults`) when the system refuses to read it or memory runs out.
    """
    where = str(path)
    wanted = set(wanted)
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                check_member_name(member.name, where)
                name = member.name[2:] if member.name.startswith("./") else member.name
                if sizes is not None and member.isfile():
                    sizes[name] = member.size
                if name not in wanted:
                    continue
                if not member.isfile():
                    raise DataError(f"{where}: member {name} is not a regular file (a link or device); refusing it")
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(f"{where}: member {name} claims {member.size} bytes, more than any CIFAR-10 file")
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if len(data) != member.size:
                    raise DataError(f"{where}: member {name} is truncated ({len(data)} of {member.size} bytes)")
                yield name, data
    except DataError:
        raise
    except MemoryError:
        raise memory_error(where) from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the system refused; not a damaged file
            raise io_error(exc, where) from None
        raise DataError(f"{where}: not a readable .tar.gz archive or truncated ({type(exc).__name__}: {exc})") from None


def read_archive(path: Path, wanted: Iterable[str], sizes: dict | None = None) -> dict[str, bytes]:
    """The wanted members of ``path`` (those present) as ``{name: bytes}``; see :func:`iter_archive`."""
    return dict(iter_archive(path, wanted, sizes))


def unpacked_bytes(path: Path) -> int | None:
    """What ``path`` unpacks to: a .tar.gz's recorded size (its last 4 bytes), a plain tar's size."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return os.fstat(f.fileno()).st_size
            f.seek(-4, os.SEEK_END)
            return int.from_bytes(f.read(4), "little")
    except OSError:
        return None


def extract_members(path: Path, folder: str, names: Iterable[str], dest: Path) -> Path:
    """Extract ``folder/name`` for each name from archive ``path`` into ``dest/folder`` atomically.

    The files are written into a temporary folder beside the target and renamed into place only when
    every member has been read, so a failure leaves no half-extracted folder. Returns the folder.
    """
    names = tuple(names)
    dest = Path(dest)
    target = dest / folder
    if target.exists():
        raise DataError(f"{target} already exists; remove it to extract {path.name} again")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=".part", dir=dest))
    except OSError as exc:
        raise io_error(exc, dest, write=True, needed_bytes=unpacked_bytes(path), folder=dest, own_path=True) from None
    try:
        found = set()
        for name, data in iter_archive(path, [f"{folder}/{n}" for n in names]):
            base = name.split("/", 1)[1]
            _write(tmp / base, data, path, target)
            found.add(base)
        missing = [n for n in names if n not in found]
        if missing:
            raise DataError(f"{path}: archive lacks {folder}/{missing[0]}"
                            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        if target.exists():
            raise DataError(f"{target} already exists; remove it to extract {path.name} again")
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise io_error(exc, target, write=True) from None
    finally:
        if tmp.exists():  # nothing half-extracted stays behind, whatever went wrong
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write(file: Path, data: bytes, archive: Path, target: Path) -> None:
    """Write one extracted file into the hidden partial folder; a refusal names its final path."""
    try:
        file.write_bytes(data)
    except OSError as exc:
        shutil.rmtree(file.parent, ignore_errors=True)  # the partial folder goes now: the free space counted is real
        raise io_error(exc, target / file.name, write=True, needed_bytes=unpacked_bytes(archive),
                       folder=target.parent, own_path=True,
                       note=f"{archive.name} is kept; the partial {target.name}/ was removed") from None
