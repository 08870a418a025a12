"""One writer per run directory: an advisory lock held for the life of a run::

    with RunLock(run_dir, note=print):      # RunLockedError (one line, exit 2 on the CLI) if in use
        ...                                  # train, resume: everything that writes into run_dir

The lock is ``run_dir/.lock``, locked with ``fcntl.flock`` (released by the kernel when the process
ends, however it ends) and holding the PID, host and start time of the holder, for the message a
second run gets. A lock file left by a process that died (kill -9, a crash, a reboot) is stale: the
next run takes it over and says so in one line. Where ``fcntl`` is missing (Windows), the file is
created exclusively instead, and a file whose PID no longer runs on this host counts as stale.

Readers (``evaluate``, ``gates``) take no lock: checkpoints are replaced atomically, so a reader
always sees a whole one.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:            # pragma: no cover - Windows
    fcntl = None

from eca_ref.errors import InputError

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "pid_alive"]

LOCK_NAME = ".lock"


class RunLockedError(InputError):
    """Another process holds the run directory's lock."""


def pid_alive(pid) -> bool:
    """Whether process ``pid`` exists on this machine (a PID we may not signal exists too)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    pid = info.get("pid")
    what = f"PID {pid}" if pid else "a process whose PID is not recorded"
    if info.get("host") and info.get("host") != socket.gethostname():
        what += f" on {info['host']}"
    if info.get("started"):
        what += f", started {info['started']}"
    return what


class RunLock:
    """Context manager holding ``run_dir/.lock`` (see the module docstring). ``note``: called with
    the one-line message when a stale lock is taken over."""

    def __init__(self, run_dir, *, note=None):
        self.path = Path(run_dir) / LOCK_NAME
        self.note = note
        self.fd = None

    def _refuse(self, info: dict):
        raise RunLockedError(f"{self.path.parent} is in use by another eca-ref run ({_describe(info)}); "
                             "wait for it to end, or use another --out")

    def _open_flock(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            info = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                self._refuse(info)
            raise
        return fd

    def _open_exclusive(self) -> int:  # pragma: no cover - no fcntl
        for _ in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                fd = os.open(self.path, os.O_RDONLY)
                info = _read_holder(fd)
                os.close(fd)
                if pid_alive(info.get("pid")) or not info:
                    self._refuse(info)
                os.unlink(self.path)
        self._refuse({})

    def __enter__(self):
        fd = self._open_flock() if fcntl is not None else self._open_exclusive()
        try:
            old = _read_holder(fd)
            if old and self.note is not None:
                self.note(f"taking over the stale lock of {self.path.parent} ({_describe(old)}, no longer running)")
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(info) + "\n").encode())
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc):
        fd, self.fd = self.fd, None
        if fd is None:
            return False
        try:
            if fcntl is not None:
                os.ftruncate(fd, 0)        # an empty lock file is a free one; it stays (unlinking races)
        except OSError:
            pass
        finally:
            os.close(fd)
        if fcntl is None:  # pragma: no cover
            try:
                os.unlink(self.path)
            except OSError:
                pass
        return False
