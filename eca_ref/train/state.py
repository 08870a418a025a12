"""The whole state of a run, and its checkpoint: saving it and reading it back.

``(params, BN buffers, momentum buffers, step, epoch, batch within the epoch, the data generator's
state at the start of the epoch, the epoch's running sums)``: a checkpoint stores all of it, so
resuming replays the same batches (same shuffle, same augmentation) and gives bit-identical
weights to a run that never stopped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np  # the generator state probe and the recorded version

from eca_ref.backend import get_xp
from eca_ref.errors import CheckpointError
from eca_ref.models import init_resnet
from eca_ref.train.checkpoint import META_NAME, json_safe, save_checkpoint
from eca_ref.train.config import TrainConfig
from eca_ref.train.dataset import TrainData
from eca_ref.train.rundir import eca_version, write_error
from eca_ref.train.schedule import Schedule
from eca_ref.validation import check_int

__all__ = ["RunState", "all_finite", "empty_partial", "save_state", "state_from_checkpoint"]


def empty_partial() -> dict:
    """The running sums of an epoch that has not started."""
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


@dataclass
class RunState:
    params: dict
    buffers: dict
    momentum: dict
    step: int = 0
    epoch: int = 0                    # finished epochs
    batch: int = 0                    # batches done in the current epoch
    rng_state: dict = None            # data generator at the start of the current epoch
    partial: dict = field(default_factory=empty_partial)
    metrics: list = field(default_factory=list)
    saved: str = ""                   # what the checkpoint on disk holds, for messages

    def where(self) -> str:
        return f"epoch {self.epoch}" + (f", batch {self.batch}" if self.batch else "") + f", step {self.step}"


def save_state(run_dir: Path, st: RunState, cfg: TrainConfig, data: TrainData, sched: Schedule, status: str) -> None:
    """Write the checkpoint of ``st`` (atomically: the previous one stays valid until this one is whole)."""
    meta = {
        "config": cfg.to_dict(),
        "status": status,
        "epoch": st.epoch,
        "step": st.step,
        "batch_in_epoch": st.batch,
        "partial": st.partial,
        "metrics": st.metrics,
        "optimizer": {"name": "sgd", **cfg.sgd().to_dict(),
                      "lr_next": sched(st.step) if st.step < sched.total_steps else None},
        "schedule": sched.to_dict(),
        "rng": {"data": st.rng_state},
        "data": data.meta(),
        "eca_ref_version": eca_version(),
        "numpy_version": np.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        save_checkpoint(run_dir, {"params": st.params, "buffers": st.buffers, "momentum": st.momentum},
                        json_safe(meta))
    except OSError as exc:
        name = META_NAME if META_NAME in str(exc.filename or "") else f"checkpoint-s{st.step:08d}.npz"
        raise write_error(exc, run_dir / name, resume_dir=run_dir if st.saved else None) from None
    st.saved = st.where()


def state_from_checkpoint(run_dir: Path, groups: dict, meta: dict, cfg: TrainConfig) -> RunState:
    """The RunState of a loaded checkpoint, checked against the model of the saved config."""
    # the expected names, shapes and dtypes come from a freshly built model of the saved config
    ref_p, ref_b = init_resnet(cfg.model_config(), np.random.default_rng(0), dtype=np.float32)
    xp = get_xp()
    want = {"params": ref_p, "buffers": ref_b, "momentum": ref_p}
    out = {}
    for g, ref in want.items():
        got = groups.get(g, {})
        if set(got) != set(ref):
            raise CheckpointError(f"{run_dir}: checkpoint {g} do not match the model of the saved config "
                                  f"(missing {sorted(set(ref) - set(got))[:3]}, unexpected {sorted(set(got) - set(ref))[:3]})")
        for k, a in got.items():
            if a.shape != ref[k].shape or a.dtype != ref[k].dtype:
                raise CheckpointError(f"{run_dir}: checkpoint {g}[{k!r}] has shape {a.shape} {a.dtype}, "
                                      f"the model needs {ref[k].shape} {ref[k].dtype}")
        out[g] = {k: xp.asarray(a) for k, a in got.items()}
    try:
        st = RunState(params=out["params"], buffers=out["buffers"], momentum=out["momentum"],
                      step=check_int(meta["step"], "step", min_value=0),
                      epoch=check_int(meta["epoch"], "epoch", min_value=0),
                      batch=check_int(meta["batch_in_epoch"], "batch_in_epoch", min_value=0),
                      rng_state=meta["rng"]["data"], partial=dict(meta["partial"]), metrics=list(meta["metrics"]))
        probe = np.random.default_rng()
        probe.bit_generator.state = st.rng_state
        for key in ("loss_sum", "correct", "seen", "seconds"):
            float(st.partial[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{run_dir}: corrupt checkpoint metadata ({type(exc).__name__}: {exc})") from None
    st.saved = st.where()
    return st          # how the numbers fit together is checked by eca_ref.train.checkmeta


def all_finite(*groups: dict) -> bool:
    """No NaN or inf in any floating array of the dictionaries."""
    xp = get_xp()
    return all(bool(xp.isfinite(a).all()) for g in groups for a in g.values() if a.dtype.kind == "f")
