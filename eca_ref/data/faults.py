"""Faults of the system, not of the data: a full disk, a refused permission, a read-only or vanished folder.

The data code turns every :class:`OSError` of reading or writing data files, and a MemoryError while
loading, into one :class:`DataIOError` whose message names the path, says what the system refused and
what to do. ``eca-ref data`` prints it as one line and exits with status 1 (the data is fine; the
machine refused), where a bad file or a bad option (:class:`~eca_ref.errors.DataError`) exits with 2.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from eca_ref.errors import EcaRefError

MB = 1_000_000


class DataIOError(EcaRefError, OSError):
    """The system refused to read or write a data file (ENOSPC, EACCES, EROFS, ENOENT, EIO, ENOMEM...).

    An :class:`~eca_ref.errors.EcaRefError` (one line, no traceback) and an :class:`OSError` (``errno``
    and ``filename`` are set), exit status 1 on the command line.
    """

    exit_code = 1

    def __init__(self, message: str, *, code: int | None = None, filename=None):
        super().__init__(message)
        self.errno, self.filename = code, None if filename is None else str(filename)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def free_mb(folder) -> int | None:
    """Free space under ``folder`` (or its nearest existing parent) in MB, None if unknown."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free // MB
    except OSError:
        return None


def space_hint(folder, needed_bytes: int | None) -> str:
    """'free N MB or choose another --root', N being what is missing under ``folder`` (when known)."""
    have = free_mb(folder)
    if needed_bytes is None or have is None:
        return "free some space or choose another --root"
    need = -(-needed_bytes // MB)
    short = max(need - have, 1)
    return f"free {short} MB or choose another --root (it needs {need} MB, {have} MB are free)"


_READ_FIX = {
    errno.EACCES: "make it readable (chmod u+r) or point --data-dir at another copy",
    errno.EPERM: "make it readable (chmod u+r) or point --data-dir at another copy",
    errno.ENOENT: "it vanished while in use; check the folder and run it again",
    errno.EIO: "the disk or network drive failed; copy the data elsewhere or download it again",
}
_WRITE_FIX = {
    errno.EACCES: "make the folder writable or choose another --root",
    errno.EPERM: "make the folder writable or choose another --root",
    errno.EROFS: "choose another --root on a writable file system",
    errno.ENOENT: "the folder vanished while in use; check it and run it again",
    errno.EIO: "the disk or network drive failed; choose another --root",
    errno.EDQUOT: "your disk quota is used up; free some space or choose another --root",
}


def io_error(exc: OSError, path, *, write: bool = False, needed_bytes: int | None = None,
             folder=None, note: str = "", own_path: bool = False) -> DataIOError:
    """One DataIOError for ``exc`` raised while reading (or writing) ``path``.

    ``needed_bytes`` and ``folder``: for a full disk, how much the whole write needs and where, so the
    message can say how many MB to free. ``note`` is added at the end (e.g. what became of a partial
    file). The path named is the one in ``exc``, else ``path``; ``own_path`` names ``path`` always.
    """
    if isinstance(exc, DataIOError):
        return exc
    where = path if own_path else (exc.filename or path)
    reason = (exc.strerror or os.strerror(exc.errno)) if exc.errno else (str(exc) or type(exc).__name__)
    if exc.errno == errno.ENOSPC:
        fix = space_hint(folder if folder is not None else Path(where).parent, needed_bytes)
    else:
        fix = (_WRITE_FIX if write else _READ_FIX).get(exc.errno, "check the path and run it again")
    verb = "write" if write else "read"
    return DataIOError(f"cannot {verb} {where}: {reason}; {fix}" + (f"; {note}" if note else ""),
                       code=exc.errno, filename=where)


def memory_error(what: str, nbytes: int | None = None) -> DataIOError:
    """One DataIOError for a MemoryError while handling ``what`` (about ``nbytes`` bytes)."""
    size = f" (about {-(-nbytes // MB)} MB)" if nbytes else ""
    return DataIOError(f"not enough memory to load {what}{size}; close other programs or use a machine with "
                       "more memory", code=errno.ENOMEM)
