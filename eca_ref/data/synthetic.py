"""Small generated CIFAR-10 look-alikes, written in both official layouts, for tests and docs.

:func:`make_fake_cifar10` writes ``cifar-10-batches-bin/`` and ``cifar-10-batches-py/`` (and, on request,
the two ``.tar.gz`` archives) exactly as the official files are laid out, so every code path of the
loader, the archive reader and the downloader runs on them. The python batches are protocol-2 pickles
written opcode by opcode as Python 2 wrote the originals (strings as ``BINSTRING``, the array rebuilt
through ``numpy.core.multiarray._reconstruct``), so :func:`pickle.load` (``encoding="bytes"``) and the
restricted unpickler both read them.

The images are learnable on purpose: each class has its own mean colour and a bright square in a
class-dependent place, plus uniform noise, so a tiny network trained on a few hundred of them beats
chance within an epoch or two.
"""
from __future__ import annotations

import gzip
import io
import struct
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy

from eca_ref.data.formats import CLASS_NAMES, CHANNELS, FORMATS, HEIGHT, NUM_CLASSES, PIXELS, WIDTH
from eca_ref.errors import InputError
from eca_ref.fileio import atomic_write_bytes
from eca_ref.validation import check_int

# --- a protocol-2 pickle writer in the style of the original Python 2 files -------------------------
_P = {  # the opcodes used (see pickletools)
    "PROTO": b"\x80", "STOP": b".", "MARK": b"(", "EMPTY_DICT": b"}", "SETITEMS": b"u", "EMPTY_LIST": b"]",
    "APPENDS": b"e", "BININT": b"J", "BININT1": b"K", "SHORT_BINSTRING": b"U", "BINSTRING": b"T",
    "GLOBAL": b"c", "TUPLE": b"t", "TUPLE1": b"\x85", "TUPLE3": b"\x87", "REDUCE": b"R", "BUILD": b"b",
    "NEWFALSE": b"\x89",
}


def _w_int(out: list, v: int) -> None:
    if 0 <= v < 256:
        out.append(_P["BININT1"] + bytes([v]))
    elif -(2 ** 31) <= v < 2 ** 31:
        out.append(_P["BININT"] + struct.pack("<i", v))
    else:
        raise InputError(f"integer {v} does not fit the 4-byte pickle opcode used here")


def _w_bytes(out: list, v: bytes) -> None:
    if len(v) < 256:
        out.append(_P["SHORT_BINSTRING"] + bytes([len(v)]) + v)
    else:
        out.append(_P["BINSTRING"] + struct.pack("<i", len(v)) + v)


def _w_uint8_array(out: list, a: numpy.ndarray) -> None:
    # numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b"), then
    # BUILD with (1, shape, dtype("u1"), False, raw bytes): ndarray.__setstate__.
    out.append(_P["GLOBAL"] + b"numpy.core.multiarray\n_reconstruct\n")
    out.append(_P["GLOBAL"] + b"numpy\nndarray\n")
    _w_int(out, 0)
    out.append(_P["TUPLE1"])
    _w_bytes(out, b"b")
    out.append(_P["TUPLE3"] + _P["REDUCE"])
    out.append(_P["MARK"])
    _w_int(out, 1)
    out.append(_P["MARK"])
    for d in a.shape:
        _w_int(out, int(d))
    out.append(_P["TUPLE"])
    out.append(_P["GLOBAL"] + b"numpy\ndtype\n")  # dtype("u1", 0, 1) with state (3, "|", ...)
    _w_bytes(out, b"u1")
    _w_int(out, 0)
    _w_int(out, 1)
    out.append(_P["TUPLE3"] + _P["REDUCE"])
    out.append(_P["MARK"])
    _w_int(out, 3)
    _w_bytes(out, b"|")
    out.append(b"N" * 3)  # NONE x3: names, fields, subarray
    for v in (-1, -1, 0):
        _w_int(out, v)
    out.append(_P["TUPLE"] + _P["BUILD"])
    out.append(_P["NEWFALSE"])
    _w_bytes(out, numpy.ascontiguousarray(a, dtype=numpy.uint8).tobytes())
    out.append(_P["TUPLE"] + _P["BUILD"])


def _w(out: list, v) -> None:
    if isinstance(v, bool):
        raise InputError("bool is not used in CIFAR-10 pickles")
    if isinstance(v, int):
        _w_int(out, v)
    elif isinstance(v, bytes):
        _w_bytes(out, v)
    elif isinstance(v, list):
        out.append(_P["EMPTY_LIST"])
        if v:
            out.append(_P["MARK"])
            for item in v:
                _w(out, item)
            out.append(_P["APPENDS"])
    elif isinstance(v, dict):
        out.append(_P["EMPTY_DICT"])
        if v:
            out.append(_P["MARK"])
            for key, item in v.items():
                _w(out, key)
                _w(out, item)
            out.append(_P["SETITEMS"])
    elif isinstance(v, numpy.ndarray) and v.dtype == numpy.uint8:
        _w_uint8_array(out, v)
    else:
        raise InputError(f"cannot write {type(v).__name__} in a CIFAR-10 style pickle")


def py2_style_pickle(obj) -> bytes:
    """Pickle ``obj`` (dicts, lists, ints, bytes, uint8 arrays) as protocol 2, like the official files."""
    out = [_P["PROTO"] + b"\x02"]
    _w(out, obj)
    out.append(_P["STOP"])
    return b"".join(out)


# --- the fake data set ------------------------------------------------------------------------------
class FakeCifar10(NamedTuple):
    """What :func:`make_fake_cifar10` wrote: the root and the arrays the loader must give back."""

    root: Path
    train: tuple  # (images uint8 (n_train, 3, 32, 32), labels int64 (n_train,))
    test: tuple  # (images uint8 (n_test, 3, 32, 32), labels int64 (n_test,))
    class_names: list


def fake_images(n: int, rng: numpy.random.Generator) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``n`` learnable 32x32 RGB images: labels cycle 0..9 (shuffled), class colour + square + noise."""
    labels = rng.permutation(numpy.arange(n) % NUM_CLASSES).astype(numpy.int64)  # (n,)
    palette = numpy.random.default_rng(1234).integers(30, 226, size=(NUM_CLASSES, CHANNELS))  # (10, 3)
    x = rng.integers(-40, 41, size=(n, CHANNELS, HEIGHT, WIDTH)) + palette[labels][:, :, None, None]
    for c in range(NUM_CLASSES):  # a bright 8x8 square whose place depends on the class
        r, q = divmod(c, 4)
        x[labels == c, :, 2 + 8 * r:10 + 8 * r, 2 + 7 * q:10 + 7 * q] += 60
    return numpy.clip(x, 0, 255).astype(numpy.uint8), labels


def _files(fmt_name: str, train, test, names, splits_train) -> dict[str, bytes]:
    """{file name: bytes} of one layout."""
    fmt = FORMATS[fmt_name]
    batches = [(n, train[0][i], train[1][i]) for i, n in zip(range(5), fmt.batch_files("train"))]
    batches.append((fmt.batch_files("test")[0], test[0], test[1]))
    out = {}
    for i, (name, x, y) in enumerate(batches):
        flat = x.reshape(len(x), PIXELS)  # (n, 3072): R plane, G plane, B plane
        if fmt_name == "binary":
            out[name] = numpy.concatenate([y.astype(numpy.uint8)[:, None], flat], axis=1).tobytes()
        else:
            label = f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1"
            out[name] = py2_style_pickle({
                b"batch_label": label.encode(),
                b"labels": [int(v) for v in y],
                b"data": flat,
                b"filenames": [f"fake_{name}_{j:05d}.png".encode() for j in range(len(y))],
            })
    if fmt_name == "binary":
        out[fmt.meta] = ("\n".join(names) + "\n\n").encode()
    else:
        out[fmt.meta] = py2_style_pickle({b"num_cases_per_batch": max(splits_train),
                                          b"label_names": [n.encode() for n in names], b"num_vis": PIXELS})
    return out


def write_tar_gz(path: Path, members: dict[str, bytes], *, extra: list[tarfile.TarInfo] = ()) -> Path:
    """Write a deterministic .tar.gz (fixed mtimes) holding ``members`` (and folder entries), atomically."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        folders = sorted({n.split("/")[0] for n in members if "/" in n} - {"", ".", ".."})
        for d in folders:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.size else None)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def make_fake_cifar10(root, *, n_train: int = 100, n_test: int = 50, seed: int = 0,
                      formats=("binary", "python"), archives: bool = False) -> FakeCifar10:
    """Write a small generated CIFAR-10 into ``root`` in the official layouts.

    Args:
        root: folder to write into (created if needed).
        n_train: training images, split over data_batch_1..5 as evenly as possible (>= 5).
        n_test: test images in test_batch (>= 1).
        seed: seed of the images and labels; the same seed writes the same bytes.
        formats: which extracted folders to write: "binary" -> cifar-10-batches-bin/,
            "python" -> cifar-10-batches-py/.
        archives: also write cifar-10-binary.tar.gz / cifar-10-python.tar.gz (for the given formats).

    Returns:
        FakeCifar10(root, train=(images, labels), test=(images, labels), class_names): the arrays
        :func:`~eca_ref.data.load_cifar10` must return.

    Example:
        >>> import tempfile
        >>> fake = make_fake_cifar10(tempfile.mkdtemp(), n_train=10, n_test=5, formats=("binary",))
        >>> sorted(p.name for p in fake.root.iterdir())
        ['cifar-10-batches-bin']
    """
    n_train = check_int(n_train, "n_train", min_value=5)
    n_test = check_int(n_test, "n_test", min_value=1)
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    for f in formats:
        if f not in FORMATS:
            raise InputError(f"formats must name 'binary' and/or 'python', got {f!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = numpy.random.default_rng(seed)
    train_x, train_y = fake_images(n_train, rng)
    test_x, test_y = fake_images(n_test, rng)
    cuts = numpy.array_split(numpy.arange(n_train), 5)
    train_parts = ([train_x[c] for c in cuts], [train_y[c] for c in cuts])
    names = list(CLASS_NAMES)
    for f in formats:
        fmt = FORMATS[f]
        files = _files(f, train_parts, (test_x, test_y), names, [len(c) for c in cuts])
        folder = root / fmt.folder
        folder.mkdir(exist_ok=True)
        for name, data in files.items():
            atomic_write_bytes(folder / name, data)
        if archives:
            write_tar_gz(root / fmt.archive, {f"{fmt.folder}/{n}": d for n, d in files.items()})
    return FakeCifar10(root, (train_x, train_y), (test_x, test_y), names)
