"""Atomic file writes: nothing the user had is lost, and no half-written file ever has the final name.

The data goes to a temporary file in the destination's folder (same file system), is flushed to
disk, and only then renamed over the destination with ``os.replace``, which is atomic on POSIX and
Windows. On any error the temporary file is removed and the destination is untouched.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 less the umask); mkstemp gives 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, write: Callable) -> Path:
    """Call ``write(f)`` on a binary temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
