"""Every field of a checkpoint's metadata, checked against the saved config, the data and each other,
before a resumed run writes anything (a refused checkpoint is left exactly as it was).

:func:`eca_ref.train.state.state_from_checkpoint` checks types and the arrays; this module checks
that the numbers describe a point the run can actually be at::

    step == epoch * steps_per_epoch + batch_in_epoch     0 <= batch_in_epoch < steps_per_epoch
    0 <= epoch <= epochs (batch_in_epoch 0 at the end)    len(metrics) == epoch, metric i is epoch i + 1
    partial: seen == batch_in_epoch * batch_size, 0 <= correct <= seen, loss_sum and seconds finite >= 0
    status, optimizer, schedule, normalisation and data counts agree with the config and the data
"""
from __future__ import annotations

import math

import numpy as np  # the normalisation statistics are host-side

from eca_ref.errors import CheckpointError
from eca_ref.train.config import TrainConfig
from eca_ref.train.dataset import TrainData
from eca_ref.train.schedule import Schedule

__all__ = ["STATUSES", "check_progress"]

STATUSES = ("started", "running", "interrupted", "finished")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _problems(meta: dict, st, cfg: TrainConfig, data: TrainData, sched: Schedule):
    """Yield a description of each inconsistency, most telling first."""
    spe = -(-len(data.train_y) // cfg.batch_size)
    if not 0 <= st.epoch <= cfg.epochs:
        yield f"epoch {st.epoch} is outside [0, {cfg.epochs}] (the config's epochs)"
    if not 0 <= st.batch < spe:
        yield f"batch_in_epoch {st.batch} is outside [0, {spe}) (an epoch has {spe} batches)"
    if st.epoch >= cfg.epochs and st.batch != 0:
        yield f"batch_in_epoch {st.batch} after the last epoch"
    if st.step != st.epoch * spe + st.batch:
        yield (f"step {st.step} != epoch {st.epoch} * {spe} batches + batch_in_epoch {st.batch} "
               f"= {st.epoch * spe + st.batch}")
    p = st.partial
    if set(p) != {"loss_sum", "correct", "seen", "seconds"}:
        yield f"partial has fields {sorted(p)}, expected correct, loss_sum, seconds, seen"
    elif not (_int(p["seen"]) and _int(p["correct"]) and _num(p["loss_sum"]) and _num(p["seconds"])):
        yield f"partial sums {p} are not integers and finite numbers"
    else:
        if p["seen"] != min(st.batch * cfg.batch_size, len(data.train_y)):
            yield (f"partial seen {p['seen']} != batch_in_epoch {st.batch} * batch_size {cfg.batch_size}")
        if not 0 <= p["correct"] <= p["seen"]:
            yield f"partial correct {p['correct']} is outside [0, seen {p['seen']}]"
        if p["loss_sum"] < 0 or p["seconds"] < 0 or (p["seen"] == 0 and p["loss_sum"] != 0):
            yield f"partial loss_sum {p['loss_sum']} or seconds {p['seconds']} is impossible"
    if len(st.metrics) != st.epoch:
        yield f"{len(st.metrics)} epochs of metrics for epoch {st.epoch}"
    for i, m in enumerate(st.metrics):
        if not isinstance(m, dict) or m.get("epoch") != i + 1 or m.get("step") != (i + 1) * spe:
            yield f"metrics line {i + 1} is not the line of epoch {i + 1} (step {(i + 1) * spe})"
            break
    status = meta.get("status")
    if status not in STATUSES:
        yield f"status {status!r} is not one of {', '.join(STATUSES)}"
    elif (status == "finished") != (st.epoch >= cfg.epochs):
        yield f"status {status!r} at epoch {st.epoch} of {cfg.epochs}"
    opt = meta.get("optimizer")
    want_opt = {"name": "sgd", **cfg.sgd().to_dict()}
    if not isinstance(opt, dict) or any(opt.get(k) != v for k, v in want_opt.items()):
        yield f"optimizer {opt} does not match the config ({want_opt})"
    else:
        lr = opt.get("lr_next")
        want_lr = sched(st.step) if st.step < sched.total_steps else None
        if (lr is None) != (want_lr is None) or (lr is not None and not (_num(lr) and math.isclose(lr, want_lr, rel_tol=1e-9))):
            yield f"optimizer lr_next {lr!r} is not the schedule's learning rate at step {st.step} ({want_lr!r})"
    if meta.get("schedule") != sched.to_dict():
        yield f"schedule {meta.get('schedule')} is not the config's ({sched.to_dict()})"
    d = meta.get("data") or {}
    if d.get("n_train") != len(data.train_y) or d.get("n_test") != len(data.test_y):
        yield (f"data counts {d.get('n_train')} train / {d.get('n_test')} test are not the data's "
               f"{len(data.train_y)} / {len(data.test_y)}")
    mean, std = data.mean, data.std            # computed from the images by load_data
    try:
        ok = np.allclose(np.asarray(d.get("mean"), np.float64), mean, rtol=1e-6, atol=0) and \
            np.allclose(np.asarray(d.get("std"), np.float64), std, rtol=1e-6, atol=0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        yield f"data mean {d.get('mean')} / std {d.get('std')} are not the training images' statistics"



def check_progress(run_dir, meta: dict, st, cfg: TrainConfig, data: TrainData, sched: Schedule) -> None:
    """Raise one CheckpointError naming the first inconsistency of ``meta`` (and the RunState ``st``
    read from it) with ``cfg``, ``data`` and ``sched``; nothing is written."""
    for why in _problems(meta, st, cfg, data, sched):
        raise CheckpointError(f"{run_dir}/checkpoint.json: inconsistent checkpoint: {why}; it was edited or "
                              "damaged, and is left as it is: restore a copy, or start a new run")
