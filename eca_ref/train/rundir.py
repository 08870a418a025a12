"""The files of a run directory other than the checkpoint::

    config.json          the configuration and the data it was trained on (informational)
    metrics.jsonl        one JSON line per finished epoch

(checkpoint.json and checkpoint-s*.npz: see :mod:`eca_ref.train.checkpoint` and :mod:`eca_ref.train.state`.)
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np  # its version is recorded

from eca_ref import __version__
from eca_ref.errors import InputError
from eca_ref.train.checkpoint import has_checkpoint, json_safe, write_atomic, write_json_atomic
from eca_ref.train.config import TrainConfig
from eca_ref.train.dataset import TrainData
from eca_ref.train.schedule import Schedule

__all__ = ["append_metrics", "eca_version", "prepare_run_dir", "write_metrics", "write_run_config"]


def eca_version() -> str:
    return __version__


def prepare_run_dir(out, *, new: bool) -> Path:
    """Create ``out`` if needed and check that it can be written. With ``new``, refuse a directory
    that already holds a run (so a finished run is never overwritten by accident)."""
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
    if new and has_checkpoint(p):
        raise InputError(f"{p} already holds a run (checkpoint.json); continue it with --resume {p}, "
                         "or choose another --out")
    return p


def write_run_config(run_dir: Path, cfg: TrainConfig, sched: Schedule, data: TrainData) -> None:
    """config.json: the recipe, its schedule, the data and the versions (informational)."""
    write_json_atomic(run_dir / "config.json", json_safe({
        "train": cfg.to_dict(), "schedule": sched.to_dict(),
        "data": {"root": str(data.root), "n_train": len(data.train_y), "n_test": len(data.test_y),
                 "mean": data.mean.tolist(), "std": data.std.tolist(), "train_fingerprint": data.fingerprint},
        "eca_ref_version": eca_version(), "numpy_version": np.__version__,
    }))


def write_metrics(run_dir: Path, metrics: list) -> None:
    """metrics.jsonl holding exactly these lines (replaces the file atomically)."""
    text = "".join(json.dumps(m, allow_nan=False) + "\n" for m in metrics)
    write_atomic(run_dir / "metrics.jsonl", text.encode())


def append_metrics(run_dir: Path, m: dict) -> None:
    """One more line of metrics.jsonl."""
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(m, allow_nan=False) + "\n")
