"""Find CIFAR-10 under a root, load a split, read the class names, and report what is there.

Where data lives (the same rule for every command and function): the ``root`` argument
(``--root`` / ``--data-dir`` on the command line), else ``$ECA_REF_DATA``, else ``~/.cache/eca-ref``.

``root`` may be

* a folder holding ``cifar-10-batches-bin/`` or ``cifar-10-batches-py/`` (extracted archives) or the
  archives ``cifar-10-binary.tar.gz`` / ``cifar-10-python.tar.gz`` themselves;
* either extracted folder itself;
* either archive, read in memory without extracting it.

When a folder holds several copies, the first of binary folder, python folder, binary archive, python
archive is used (the binary folder loads fastest).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy

from eca_ref.data.archive import MAX_MEMBER_BYTES, read_archive
from eca_ref.data.faults import DataIOError, io_error, memory_error
from eca_ref.data.formats import FORMATS, PARSERS, RECORD_SIZE, RECORDS_PER_FILE, SPLITS, Format, check_record_counts
from eca_ref.errors import DataError

ENV_VAR = "ECA_REF_DATA"
# Inside this module, file names are spelled as in the binary layout; _as_format maps them to a layout.
_BINARY = FORMATS["binary"]


def _resolve(root=None) -> tuple[Path, str]:
    if root is not None and str(root) != "":
        return Path(root).expanduser(), "argument"
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser(), f"${ENV_VAR}"
    return Path.home() / ".cache" / "eca-ref", "default"


def resolve_root(root=None) -> Path:
    """The data root: ``root`` if given, else ``$ECA_REF_DATA``, else ``~/.cache/eca-ref``."""
    return _resolve(root)[0]


def how_to_get_data(root: Path) -> str:
    """The hint every 'no data' error ends with."""
    return (f"Download it with `eca-ref data download --root {root}`, or point --data-dir / ${ENV_VAR} at a "
            "folder holding cifar-10-batches-bin/, cifar-10-batches-py/ or one of the official archives "
            "(cifar-10-binary.tar.gz, cifar-10-python.tar.gz)")


class Source(NamedTuple):
    """One copy of CIFAR-10: an extracted ``folder`` or an ``archive``, in ``format`` binary/python."""

    kind: str  # "folder" or "archive"
    format: str | None  # "binary", "python", or None for an archive of yet unknown format
    path: Path

    def describe(self) -> str:
        return f"{self.format or 'unknown-format'} {self.kind} {self.path}"


def _is_archive_name(p: Path) -> bool:
    return p.name.endswith((".tar.gz", ".tgz", ".tar"))


def _folder_format(p: Path) -> str | None:
    """'binary'/'python' if ``p`` looks like an extracted batch folder itself, else None."""
    for fmt in FORMATS.values():
        if any((p / f).is_file() for f in fmt.expected_files()):
            return fmt.name
    return None


def _archive_format(p: Path) -> str | None:
    return next((f.name for f in FORMATS.values() if p.name == f.archive), None)


def find_sources(root=None) -> list[Source]:
    """Every copy of CIFAR-10 at ``root`` (see the module docstring), in the order they are preferred.

    Raises DataError if ``root`` does not exist or is a file that is not a .tar.gz archive, DataIOError
    if the system refuses to look into it.
    """
    root = resolve_root(root)
    try:
        return _find_sources(root)
    except OSError as exc:
        raise io_error(exc, root) from None


def _find_sources(root: Path) -> list[Source]:
    if not root.exists():
        raise DataError(f"no CIFAR-10 data: {root} does not exist. {how_to_get_data(root)}")
    if root.is_file():
        if not _is_archive_name(root):
            raise DataError(f"{root}: not a folder and not a .tar.gz archive. {how_to_get_data(root.parent)}")
        return [Source("archive", _archive_format(root), root)]
    own = _folder_format(root)
    if own is not None:
        return [Source("folder", own, root)]
    found = [Source("folder", f.name, root / f.folder) for f in FORMATS.values() if (root / f.folder).is_dir()]
    found += [Source("archive", f.name, root / f.archive) for f in FORMATS.values() if (root / f.archive).is_file()]
    return found


def find_source(root=None) -> Source:
    """The preferred copy at ``root``; DataError saying how to get the data if there is none."""
    sources = find_sources(root)
    if not sources:
        r = resolve_root(root)
        raise DataError(f"no CIFAR-10 data found in {r} (looked for cifar-10-batches-bin/, cifar-10-batches-py/, "
                        f"cifar-10-binary.tar.gz, cifar-10-python.tar.gz). {how_to_get_data(r)}")
    return sources[0]


def _read_folder_file(path: Path, fmt: Format) -> bytes:
    folder = path.parent
    try:
        if not path.is_file():
            raise DataError(f"{folder}: missing {path.name} (a CIFAR-10 {fmt.name} folder holds "
                            f"{', '.join(fmt.expected_files())})")
        size = path.stat().st_size
        if size > MAX_MEMBER_BYTES:
            raise DataError(f"{path}: {size} bytes is far larger than any CIFAR-10 file; not a CIFAR-10 batch")
        return path.read_bytes()
    except OSError as exc:  # unreadable, vanished, a failing disk: the file is named, with what to do
        raise io_error(exc, path) from None
    except MemoryError:
        raise memory_error(str(path), size) from None


def _read_files(source: Source, names: list[str], sizes: dict | None = None
                ) -> tuple[Format, dict[str, tuple[bytes, str]]]:
    """Raw bytes of ``names`` as ``{name: (bytes, where)}``; ``sizes`` gets an archive's member sizes.

    ``names`` are spelled as in the binary layout (``data_batch_1.bin``, ``batches.meta.txt``) and
    mapped to the source's layout (``data_batch_1``, ``batches.meta``); keys keep the binary spelling.
    """
    if source.kind == "folder":
        fmt = FORMATS[source.format]
        paths = {n: source.path / _as_format(n, fmt) for n in names}
        return fmt, {n: (_read_folder_file(p, fmt), str(p)) for n, p in paths.items()}
    # An archive: read the wanted names of both layouts in one pass, then see which layout it holds
    # (the one its official name says first: a renamed or mislabelled archive still loads).
    candidates = sorted(FORMATS.values(), key=lambda f: f.name != source.format)
    wanted = {}
    for f in candidates:
        for n in names:
            wanted[f"{f.folder}/{_as_format(n, f)}"] = f
    members = read_archive(source.path, wanted, sizes)
    for f in candidates:
        got = {n: members.get(f"{f.folder}/{_as_format(n, f)}") for n in names}
        if any(v is not None for v in got.values()):
            missing = [f"{f.folder}/{_as_format(n, f)}" for n, v in got.items() if v is None]
            if missing:
                raise DataError(f"{source.path}: archive lacks {missing[0]}"
                                + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                                + f" (an official {f.archive} holds {f.folder}/ with {', '.join(f.expected_files())})")
            return f, {n: (v, f"{source.path}:{f.folder}/{_as_format(n, f)}") for n, v in got.items()}
    expect = " or ".join(f"{f.folder}/" for f in candidates)
    raise DataError(f"{source.path}: archive holds no CIFAR-10 batches (expected {expect} with data_batch_1..5, "
                    "test_batch and the meta file)")


def _as_format(name: str, fmt: Format) -> str:
    if name == _BINARY.meta:
        return fmt.meta
    return name[: -len(_BINARY.suffix)] + fmt.suffix if name.endswith(_BINARY.suffix) else name


def _check_split(split) -> str:
    if split not in SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _known_counts(source: Source, fmt: Format, sizes: dict, split: str) -> dict[str, int]:
    """Images in the binary batch files of the other split, from file sizes alone (no reading)."""
    if fmt.name != "binary":
        return {}
    other = fmt.batch_files("test" if split == "train" else "train")
    if source.kind == "archive":
        found = {n: sizes.get(f"{fmt.folder}/{n}") for n in other}
    else:
        found = {}
        for n in other:
            try:
                found[n] = (source.path / n).stat().st_size
            except OSError:
                pass  # missing or unreadable: loading that split says so
    return {n: b // RECORD_SIZE for n, b in found.items() if b and b % RECORD_SIZE == 0}


def _load_from(source: Source, split: str):
    """``(images, labels, classes, format name, {where: images of each batch file})`` of one split."""
    try:
        return _load_split(source, split)
    except MemoryError:
        n = RECORDS_PER_FILE * len(_BINARY.batch_files(split))
        raise memory_error(f"the {split} split of {source.describe()}", n * RECORD_SIZE) from None


def _load_split(source: Source, split: str):
    names = list(_BINARY.batch_files(split)) + [_BINARY.meta]
    sizes = {}
    fmt, files = _read_files(source, names, sizes)
    parse_batch, parse_meta = PARSERS[fmt.name]
    classes = parse_meta(*files.pop(_BINARY.meta))
    images, labels, counts = [], [], {}
    for name in _BINARY.batch_files(split):
        raw, where = files.pop(name)
        x, y = parse_batch(raw, where)
        images.append(x)
        labels.append(y)
        counts[where] = int(x.shape[0])
    check_record_counts(counts, train=list(counts) if split == "train" else (),
                        known=_known_counts(source, fmt, sizes, split))
    out_x = numpy.concatenate(images, axis=0)  # (N, 3, 32, 32) uint8, one new C-contiguous array
    out_y = numpy.concatenate(labels).astype(numpy.int64, copy=False)  # (N,)
    return out_x, out_y, classes, fmt.name, counts


def load_cifar10(root=None, split: str = "train") -> tuple[numpy.ndarray, numpy.ndarray]:
    """Load one split of CIFAR-10 from ``root`` (see :func:`resolve_root` and the module docstring).

    Args:
        root: a folder, an extracted batch folder, or an official ``.tar.gz`` archive; ``None`` means
            ``$ECA_REF_DATA`` or ``~/.cache/eca-ref``.
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"`` (test_batch, 10,000 images).

    Returns:
        images: uint8 array (N, 3, 32, 32), C-contiguous, channels R, G, B;
        labels: int64 array (N,), values 0-9 (names from :func:`class_names`).

    Both formats give identical arrays for the same data. Every file is checked (record size,
    counts, label range, array shape and dtype, expected names, meta present); any problem raises one
    :class:`~eca_ref.errors.DataError` naming the file, and a file the system refuses to read (no
    permission, vanished, an I/O error) or too little memory one
    :class:`~eca_ref.data.faults.DataIOError` naming it. Every batch file holds 10,000 images,
    or, in a smaller copy, the training batches are split evenly (see
    :func:`~eca_ref.data.formats.check_record_counts`). Python batches are read with the restricted
    unpickler (:mod:`eca_ref.data.unpickle`).

    Example:
        >>> import tempfile
        >>> from eca_ref.data import make_fake_cifar10, load_cifar10
        >>> root = make_fake_cifar10(tempfile.mkdtemp(), n_train=20, n_test=10).root
        >>> x, y = load_cifar10(root, "test")
        >>> x.shape, x.dtype, y.shape, y.dtype
        ((10, 3, 32, 32), dtype('uint8'), (10,), dtype('int64'))
    """
    split = _check_split(split)
    images, labels, _, _, _ = _load_from(find_source(root), split)
    return images, labels


def class_names(root=None) -> list[str]:
    """The ten class names, read from the meta file of the copy at ``root``."""
    fmt, files = _read_files(find_source(root), [_BINARY.meta])
    return PARSERS[fmt.name][1](*files[_BINARY.meta])


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class SourceInfo(NamedTuple):
    """What :func:`data_info` found about one copy."""

    source: Source
    format: str | None
    counts: dict  # {"train": n, "test": n} when readable
    md5: str | None  # an archive's MD5; None for a folder
    official: bool | None  # whether that MD5 is the official archive's; None for a folder
    error: str | None  # the DataError message if the copy is unusable

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def verified(self) -> str:
        """One word or two for a table: how far this copy was verified."""
        if self.md5 is None:
            return "files checked"
        return "official MD5" if self.official else "unofficial MD5"


class DataInfo(NamedTuple):
    root: Path
    origin: str  # "argument", "$ECA_REF_DATA" or "default"
    sources: list


def inspect_source(source: Source) -> SourceInfo:
    """Load both splits of one copy (every check runs, and the record counts of all six batch files
    against each other) and, for an archive, compare its MD5. A problem, the file it is in, what was
    expected and what was found, is the ``error`` (a DataError's or DataIOError's message)."""
    md5 = official = None
    counts, fmt = {}, source.format
    try:
        if source.kind == "archive":
            try:
                md5 = file_md5(source.path)
            except OSError as exc:
                raise io_error(exc, source.path) from None
            official = md5 in {f.md5 for f in FORMATS.values()}
        per_file, train = {}, []
        for split in SPLITS:
            x, _, _, fmt, files = _load_from(source, split)
            counts[split] = int(x.shape[0])
            per_file.update(files)
            train += list(files) if split == "train" else []
            del x
        check_record_counts(per_file, train=train)
    except (DataError, DataIOError) as exc:
        return SourceInfo(source, fmt, counts, md5, official, str(exc))
    return SourceInfo(source, fmt, counts, md5, official, None)


def data_info(root=None) -> DataInfo:
    """Every copy of CIFAR-10 at ``root``: format, MD5 check (archives), image counts, or the error."""
    path, origin = _resolve(root)
    try:
        exists = path.exists()
    except OSError as exc:
        raise io_error(exc, path) from None
    sources = find_sources(path) if exists else []
    return DataInfo(path, origin, [inspect_source(s) for s in sources])
