"""Checkpoints: arrays in an ``.npz`` file (no pickle), everything else in JSON.

A run directory holds::

    checkpoint.json                  the commit point: format, version, arrays file, its SHA-256, metadata
    checkpoint-s<step>.npz           the arrays (weights, BN buffers, momentum), named "group/key"

Writing is atomic and crash-safe. The arrays go to a new file named by the
step (written to a temporary file, flushed, then renamed), and only then is
``checkpoint.json`` replaced (temporary file + ``os.replace``) to point at
it. Whatever moment a crash or Ctrl-C hits, ``checkpoint.json`` names a
complete arrays file whose checksum it holds; arrays files no longer named
are removed afterwards.

Loading trusts nothing: the JSON must carry this format's name and a version
this code reads, the arrays file must exist inside the run directory, match
the recorded SHA-256, load with ``allow_pickle=False``, and hold exactly the
arrays (names, shapes, dtypes) the JSON lists. Anything else raises one clear
:class:`~eca_ref.errors.CheckpointError`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np  # host-side file I/O only

from eca_ref.backend import asnumpy
from eca_ref.errors import CheckpointError
from eca_ref.fileio import atomic_write, atomic_write_bytes

FORMAT = "eca-ref.checkpoint"
VERSION = 1
META_NAME = "checkpoint.json"
_ALLOWED_DTYPES = {"float32", "float64", "int64"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    atomic_write_bytes(path, data)


def write_json_atomic(path: Path, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def flatten(groups: dict[str, dict]) -> dict[str, np.ndarray]:
    """``{"params": {"stem.conv.weight": a}}`` -> ``{"params/stem.conv.weight": a}`` (host arrays)."""
    flat = {}
    for g, arrays in groups.items():
        for k, v in arrays.items():
            flat[f"{g}/{k}"] = np.asarray(asnumpy(v), order="C")  # keeps 0-d arrays 0-d
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, dict]:
    groups: dict[str, dict] = {}
    for name, v in flat.items():
        g, _, k = name.partition("/")
        groups.setdefault(g, {})[k] = v
    return groups


def save_checkpoint(run_dir, groups: dict[str, dict], meta: dict) -> Path:
    """Write ``groups`` (group -> name -> array) and ``meta`` (JSON-able) into ``run_dir``.

    ``meta`` must hold an integer ``"step"``; it names the arrays file. Non-finite
    floats are refused (a diverged state is never written). Returns the path of
    ``checkpoint.json``.
    """
    run_dir = Path(run_dir)
    flat = flatten(groups)
    for name, a in flat.items():
        if str(a.dtype) not in _ALLOWED_DTYPES:
            raise CheckpointError(f"cannot save array {name!r} of dtype {a.dtype} (allowed: {sorted(_ALLOWED_DTYPES)})")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"refusing to save a checkpoint: array {name!r} contains NaN or inf")
    step = int(meta["step"])
    arrays_name = f"checkpoint-s{step:08d}.npz"
    arrays_path = run_dir / arrays_name
    atomic_write(arrays_path, lambda f: np.savez(f, **flat))
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "arrays_file": arrays_name,
        "arrays_sha256": _sha256(arrays_path),
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in flat.items()},
        "meta": meta,
    }
    meta_path = run_dir / META_NAME
    write_json_atomic(meta_path, doc)              # the commit point
    _fsync_dir(run_dir)
    for old in run_dir.glob("checkpoint-s*.npz"):  # arrays files no longer named by checkpoint.json
        if old.name != arrays_name:
            try:
                old.unlink()
            except OSError:
                pass
    return meta_path


def has_checkpoint(run_dir) -> bool:
    return (Path(run_dir) / META_NAME).is_file()


def _refuse(where, why: str):
    raise CheckpointError(f"{where}: {why}")


def load_checkpoint(run_dir) -> tuple[dict[str, dict], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(groups, meta)``.

    ``run_dir`` may also be the path of ``checkpoint.json`` itself. Raises
    CheckpointError for a missing, corrupt, foreign or newer-format checkpoint.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name == META_NAME:
        run_dir = run_dir.parent
    meta_path = run_dir / META_NAME
    if not run_dir.is_dir():
        _refuse(run_dir, "no such run directory")
    if not meta_path.is_file():
        _refuse(run_dir, f"no checkpoint found (expected {META_NAME}; is this a run directory written by 'eca-ref train'?)")
    try:
        raw = meta_path.read_bytes()
        doc = json.loads(raw.decode("utf-8"), parse_constant=lambda c: _refuse(meta_path, f"invalid number {c}"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _refuse(meta_path, f"corrupt checkpoint metadata (not valid JSON: {exc})")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _refuse(meta_path, f"not an eca-ref checkpoint (format field is {doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT!r})")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        _refuse(meta_path, f"corrupt checkpoint metadata (version {version!r})")
    if version > VERSION:
        _refuse(meta_path, f"checkpoint format version {version} is newer than this eca-ref reads ({VERSION}); upgrade eca-ref")
    if version < 1:
        _refuse(meta_path, f"unknown checkpoint format version {version}")
    name, sha, listed, meta = (doc.get(k) for k in ("arrays_file", "arrays_sha256", "arrays", "meta"))
    if not (isinstance(name, str) and isinstance(sha, str) and isinstance(listed, dict) and isinstance(meta, dict)):
        _refuse(meta_path, "corrupt checkpoint metadata (arrays_file, arrays_sha256, arrays or meta missing)")
    if Path(name).name != name or not name.endswith(".npz"):
        _refuse(meta_path, f"corrupt checkpoint metadata (arrays file {name!r} must be a plain .npz name in the run directory)")
    arrays_path = run_dir / name
    if not arrays_path.is_file():
        _refuse(run_dir, f"checkpoint arrays file {name} is missing")
    if _sha256(arrays_path) != sha:
        _refuse(arrays_path, "checksum mismatch: the arrays file is corrupt or does not belong to this checkpoint.json")
    try:
        with np.load(arrays_path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        _refuse(arrays_path, f"cannot read the arrays ({type(exc).__name__}: {exc})")
    if set(flat) != set(listed):
        extra, missing = sorted(set(flat) - set(listed)), sorted(set(listed) - set(flat))
        _refuse(arrays_path, f"arrays do not match checkpoint.json (unexpected {extra[:3]}, missing {missing[:3]})")
    for k, a in flat.items():
        spec = listed[k]
        if not isinstance(spec, dict) or list(a.shape) != spec.get("shape") or str(a.dtype) != spec.get("dtype"):
            _refuse(arrays_path, f"array {k!r} has shape {a.shape} dtype {a.dtype}, checkpoint.json says {spec}")
        if str(a.dtype) not in _ALLOWED_DTYPES:
            _refuse(arrays_path, f"array {k!r} has unsupported dtype {a.dtype}")
    return unflatten(flat), meta


def json_safe(x):
    """Python/NumPy scalars and containers -> plain JSON values (floats must be finite)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        if not math.isfinite(v):
            raise CheckpointError(f"cannot store a non-finite number ({v}) in a checkpoint")
        return v
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    return x
