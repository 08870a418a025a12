"""The files of a run directory other than the checkpoint::

    config.json          the configuration and the data it was trained on (informational)
    metrics.jsonl        one JSON line per finished epoch

(checkpoint.json and checkpoint-s*.npz: see :mod:`eca_ref.train.checkpoint` and :mod:`eca_ref.train.state`.)
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np  # its version is recorded

from eca_ref import __version__
from eca_ref.errors import InputError
from eca_ref.train.checkpoint import has_checkpoint, json_safe, write_atomic, write_json_atomic
from eca_ref.train.config import TrainConfig
from eca_ref.train.dataset import TrainData
from eca_ref.train.schedule import Schedule

__all__ = ["RunWriteError", "append_metrics", "eca_version", "prepare_run_dir", "refuse_existing_run", "write_error",
           "write_metrics", "write_run_config", "writing"]


class RunWriteError(OSError):
    """A file of a run directory could not be written (disk full, permission denied, ...). The
    message names the file and what to do; whatever the run had written before stays valid
    (every write is atomic). The CLI prints it as one line and exits with status 1."""


def _remedy(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
        return "free some space"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable"
    return "fix the folder"


def write_error(exc: OSError, path, *, resume_dir=None) -> RunWriteError:
    """The RunWriteError for ``exc`` raised while writing ``path``. ``resume_dir``: the run holds a
    valid checkpoint, so the hint is to continue it; else the hint is another --out."""
    how = _remedy(exc)
    then = (f"the last checkpoint is kept: {how}, then continue with: eca-ref train --resume {resume_dir}"
            if resume_dir is not None else f"{how}, or choose another --out")
    err = RunWriteError(f"cannot write {path}: {exc.strerror or exc}; {then}")
    err.errno = exc.errno
    return err


@contextmanager
def writing(path, *, resume_dir=None):
    """Turn an OSError raised inside the block into a :class:`RunWriteError` about ``path``."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as exc:
        raise write_error(exc, path, resume_dir=resume_dir) from None


def eca_version() -> str:
    return __version__


def prepare_run_dir(out, *, new: bool) -> Path:
    """Create ``out`` if needed and check that it can be written. With ``new``, refuse a directory
    that already holds a run (so a finished run is never overwritten by accident; see
    :func:`refuse_existing_run`, which :func:`eca_ref.train.train` calls once it holds the lock)."""
    p = Path(out).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {p}: {exc.strerror or exc}") from None
    if not p.is_dir():
        raise InputError(f"output directory {p} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"output directory {p} is not writable: {exc.strerror or exc}") from None
    if new:
        refuse_existing_run(p)
    return p


def refuse_existing_run(p: Path) -> None:
    if has_checkpoint(p):
        raise InputError(f"{p} already holds a run (checkpoint.json); continue it with --resume {p}, "
                         "or choose another --out")


def write_run_config(run_dir: Path, cfg: TrainConfig, sched: Schedule, data: TrainData) -> None:
    """config.json: the recipe, its schedule, the data (its absolute location, used again by
    resume, evaluate and gates when none is given) and the versions."""
    path = run_dir / "config.json"
    with writing(path):
        write_json_atomic(path, json_safe({
            "train": cfg.to_dict(), "schedule": sched.to_dict(), "data": data.meta(),
            "eca_ref_version": eca_version(), "numpy_version": np.__version__,
        }))


def write_metrics(run_dir: Path, metrics: list, *, resume_dir=None) -> None:
    """metrics.jsonl holding exactly these lines (replaces the file atomically). ``resume_dir``:
    see :func:`write_error`."""
    text = "".join(json.dumps(m, allow_nan=False) + "\n" for m in metrics)
    path = run_dir / "metrics.jsonl"
    with writing(path, resume_dir=resume_dir):
        write_atomic(path, text.encode())


def append_metrics(run_dir: Path, m: dict) -> None:
    """One more line of metrics.jsonl (not atomic; the loop rewrites the file with
    :func:`write_metrics` instead)."""
    path = run_dir / "metrics.jsonl"
    with writing(path), open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(m, allow_nan=False) + "\n")
