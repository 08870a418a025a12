"""Reading the .npz files an untrusted submission writes: sizes and headers checked, never pickle."""
from __future__ import annotations

import os
import stat
import zipfile
from io import BytesIO

import numpy
from numpy.lib import format as npformat

__all__ = ["MAX_NPZ", "safe_load_npz"]

MAX_NPZ = 64 << 20        # bytes of one outputs file


def safe_load_npz(path, max_bytes: int = MAX_NPZ) -> dict:
    """Arrays of an .npz written by the untrusted child, checked before any allocation.

    Every member must be an uncompressed .npy of a numeric dtype whose header
    agrees with its size; no pickle, no object arrays. Raises ValueError otherwise (also for a
    file that is not a zip archive at all, and for a link, FIFO or device in its place: the
    child writes that folder, so the path is opened without following links, without blocking,
    and read whole into memory before it is parsed).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"the outputs file cannot be opened ({exc.strerror}): a link or special file?") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("the outputs file is not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"outputs file is {st.st_size} bytes (limit {max_bytes})")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"outputs file is over {max_bytes} bytes")
    try:
        return _read(BytesIO(data), max_bytes)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"the outputs file is not an .npz archive ({exc})") from None


def _read(path, max_bytes: int) -> dict:
    arrays = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy") or info.file_size > max_bytes:
                raise ValueError(f"unexpected member {info.filename!r} in the outputs file")
            with zf.open(info) as f:
                data = f.read(max_bytes + 1)
            bio = BytesIO(data)
            version = npformat.read_magic(bio)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(bio)
            elif version == (2, 0):
                shape, fortran, dtype = npformat.read_array_header_2_0(bio)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject or dtype.kind not in "fiub":
                raise ValueError(f"member {info.filename!r} has dtype {dtype}")
            count = 1
            for s in shape:
                count *= int(s)
            body = data[bio.tell():]
            if count * dtype.itemsize != len(body):
                raise ValueError(f"member {info.filename!r}: header says {shape} {dtype}, size disagrees")
            a = numpy.frombuffer(body, dtype=dtype, count=count)
            a = a.reshape(shape, order="F" if fortran else "C").copy()
            arrays[info.filename[:-4]] = a
    return arrays
