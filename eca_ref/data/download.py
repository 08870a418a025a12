"""Download an official CIFAR-10 archive, verify its size and MD5, and only then move it into place.

The archive is streamed into a temporary file beside its final name (``.cifar-10-binary.tar.gz.XXXX.part``)
while its MD5 is computed; only when the byte count and the MD5 both match is it renamed to its final
name (an atomic ``os.replace``). An interrupted or failed download therefore never leaves a file that
looks complete, and the temporary file is removed on every error (a download is not resumed: it starts
again). A second call finds the archive, checks it again, and does nothing.

A full disk, a folder without write permission or on a read-only file system, a folder that vanished:
one :class:`~eca_ref.data.faults.DataIOError` naming the path and what to do (for a full disk, how many
MB to free), raised before any byte is fetched when the folder cannot take a file at all.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from eca_ref.data.archive import extract_members
from eca_ref.data.faults import io_error
from eca_ref.data.formats import CIFAR_PAGE, OFFICIAL_BASE_URL, get_format
from eca_ref.data.load import file_md5, resolve_root
from eca_ref.errors import DataError, InputError

CHUNK = 1 << 20
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_REMOVED = "the partial download was removed"


def check_md5_option(md5) -> str:
    """``md5`` lower-cased if it is 32 hex digits; InputError naming ``--md5`` otherwise."""
    if not isinstance(md5, str) or not _MD5.fullmatch(md5):
        raise InputError(f"--md5 must be 32 hex digits (0-9, a-f), e.g. {get_format('binary').md5}, got {md5!r}")
    return md5.lower()


def check_size_option(size) -> int:
    """``size`` if it is a positive integer (bytes); InputError naming ``--size`` otherwise."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"--size must be a positive integer (bytes), e.g. {get_format('binary').size}, got {size!r}")
    return size


class DownloadResult(NamedTuple):
    path: Path  # the verified archive
    downloaded: bool  # False: it was already there and verified (nothing done)
    extracted: Path | None  # the extracted folder, if extract=True


def _by_hand(archive: str, dest: Path, md5: str) -> str:
    return (f"To place it by hand: download {archive} from {CIFAR_PAGE} (MD5 {md5}) on a machine with network, "
            f"copy it to {dest}, and check it with `eca-ref data info --root {dest.parent}`; or point "
            "--data-dir / $ECA_REF_DATA at a copy you already have")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled)


def download_cifar10(root=None, *, format: str = "binary", base_url: str = OFFICIAL_BASE_URL,
                     md5: str | None = None, size: int | None = None, progress: bool = True,
                     timeout: float = 60.0, extract: bool = False) -> DownloadResult:
    """Download the official CIFAR-10 archive into ``root`` and verify it.

    Args:
        root: target folder (see :func:`~eca_ref.data.resolve_root`), created if needed.
        format: "binary" (cifar-10-binary.tar.gz) or "python" (cifar-10-python.tar.gz).
        base_url: where the archive is fetched from, ``base_url + "/" + archive name``; the official
            CIFAR-10 page by default (pass a mirror's URL here).
        md5: expected MD5 hex digest; default the official archive's.
        size: expected size in bytes; default the official archive's when ``md5`` is the default,
            else unchecked (the MD5 still is, and so is the server's Content-Length).
        progress: show a rich progress bar (bytes, speed, ETA) on stderr.
        timeout: seconds to wait for the server before giving up.
        extract: also extract the archive's batch folder next to it (safely; see
            :mod:`eca_ref.data.archive`), unless that folder already exists.

    Returns:
        DownloadResult(path, downloaded, extracted).

    Raises:
        DataError: network failure (with how to place the archive by hand), a cut-off transfer, a size
        or MD5 mismatch (nothing is left behind), or an existing file at the target that fails the check.
        InputError: ``md5`` not 32 hex digits, ``size`` not a positive integer (before anything is done).
        DataIOError: the system refused a write or read (full disk, permission, read-only, vanished).
    """
    fmt = get_format(format)
    md5 = None if md5 is None else check_md5_option(md5)
    size = None if size is None else check_size_option(size)
    if md5 is None:
        md5, size = fmt.md5, (fmt.size if size is None else size)
    root = resolve_root(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, root, write=True, needed_bytes=size) from None
    dest = root / fmt.archive
    url = base_url.rstrip("/") + "/" + fmt.archive
    if dest.exists():
        _check_existing(dest, md5, size)
        downloaded = False
    else:
        _fetch(url, dest, md5, size, progress, timeout, fmt.archive)
        downloaded = True
    extracted = None
    if extract:
        extracted = root / fmt.folder
        if not extracted.exists():
            extract_members(dest, fmt.folder, fmt.expected_files(), root)
    return DownloadResult(dest, downloaded, extracted)


def _check_existing(dest: Path, md5: str, size: int | None) -> None:
    try:
        have = dest.stat().st_size
        if size is not None and have != size:
            raise DataError(f"{dest} exists but has {have} bytes, expected {size}: delete it to download again")
        got = file_md5(dest)
    except OSError as exc:
        raise io_error(exc, dest) from None
    if got != md5:
        raise DataError(f"{dest} exists but its MD5 is {got}, expected {md5}: delete it to download again")


def _fetch(url: str, dest: Path, md5: str, size: int | None, progress: bool, timeout: float, archive: str) -> None:
    try:  # before any byte is fetched: can the folder take a file at all?
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise io_error(exc, dest.parent, write=True, needed_bytes=size, own_path=True) from None
    tmp = Path(tmp_name)
    expect = {"total": size}
    try:
        try:
            _stream(url, fd, dest, md5, size, progress, timeout, archive, expect)
        except OSError as exc:  # a write or the final flush: the disk, not the network
            _remove(tmp)  # first, so that the free space the message counts is real
            raise io_error(exc, dest, write=True, needed_bytes=expect["total"], own_path=True,
                           note=_REMOVED) from None
        try:
            os.replace(tmp, dest)
        except OSError as exc:
            raise io_error(exc, dest, write=True, own_path=True, note=_REMOVED) from None
    finally:
        _remove(tmp)


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # a vanished or read-only folder: the error being raised says what happened


def _stream(url: str, fd: int, dest: Path, md5: str, size: int | None, progress: bool, timeout: float,
            archive: str, expect: dict) -> None:
    """Fetch ``url`` into ``fd`` and check count and MD5; ``expect["total"]`` gets the expected size.

    Network and content faults raise DataError; a raw OSError comes only from writing ``fd``."""
    with os.fdopen(fd, "wb") as out:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http(s) URL we built)
        except urllib.error.HTTPError as exc:
            raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}. "
                            f"{_by_hand(archive, dest, md5)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"could not download {url}: {reason}. {_by_hand(archive, dest, md5)}") from None
        with response:
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            total = expect["total"] = size if size is not None else length
            h = hashlib.md5(usedforsecurity=False)
            got = 0
            with _progress(progress) as bar:
                task = bar.add_task(archive, total=total)
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, ...
                        raise DataError(f"download of {url} was interrupted after {got} bytes "
                                        f"({type(exc).__name__}); nothing was saved, run it again. "
                                        f"{_by_hand(archive, dest, md5)}") from None
                    if not block:
                        break
                    out.write(block)  # an OSError here is the disk's: see _fetch
                    h.update(block)
                    got += len(block)
                    bar.update(task, advance=len(block))
    if length is not None and got != length:
        raise DataError(f"download of {url} was cut off after {got} of {length} bytes; nothing was saved, "
                        f"run it again. {_by_hand(archive, dest, md5)}")
    if size is not None and got != size:
        raise DataError(f"downloaded {got} bytes from {url}, expected {size}; nothing was saved "
                        "(a different or damaged file)")
    digest = h.hexdigest()
    if digest != md5:
        raise DataError(f"downloaded file from {url} has MD5 {digest}, expected {md5}; nothing was saved "
                        "(a damaged transfer or a different file)")
