"""The training loop: plain functions that train, checkpoint and resume a run::

    from eca_ref.train import TrainConfig, train, resume
    result = train(TrainConfig(epochs=10, seed=0), "runs/eca_d8")     # or resume("runs/eca_d8")
    result.status, result.metrics[-1]["test_acc"]

One run lives in one directory::

    config.json          the configuration and the data it was trained on (informational)
    metrics.jsonl        one JSON line per finished epoch (test_loss and test_acc null on the
                         epochs a ``test_every`` > 1 skips; the last epoch is always evaluated)
    checkpoint.json      the checkpoint metadata (see eca_ref.train.checkpoint)
    checkpoint-s*.npz    weights, BN buffers and momentum buffers

A step (:func:`eca_ref.train.step.train_step`) is: forward in train mode, softmax cross-entropy,
backward, one SGD update with the learning rate of the schedule at this step; the model passes
come from an :class:`eca_ref.engine.Runner` (``threads``, ``workers``, ``engine``). The whole
state of a run (:class:`eca_ref.train.state.RunState`) is in every checkpoint, so resuming
replays the same batches (same shuffle, same augmentation) and gives bit-identical weights to a
run that never stopped. Checkpoints are written at the start, at the end of every epoch, and when
Ctrl-C is pressed (the first Ctrl-C finishes the current step, writes a checkpoint and returns; a
second one stops at once).

Randomness: ``numpy.random.SeedSequence(seed)`` is split into two independent
generators, one for the initial weights and one for shuffling and augmentation.

The modules around the loop: config (TrainConfig, PRESETS), result (TrainResult), dataset
(load_data), evaluate (predict, evaluate_arrays), rundir (config.json, metrics.jsonl), interrupt
(Ctrl-C), state (the checkpointed state), step (one step), runner (the model passes).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from eca_ref.backend import get_xp
from eca_ref.data import iterate_batches
from eca_ref.errors import CheckpointError, InputError
from eca_ref.models import count_parameters, decay_keys, init_resnet
from eca_ref.train.checkpoint import json_safe, load_checkpoint
from eca_ref.train.config import TrainConfig, schedule_for
from eca_ref.train.dataset import TrainData, load_data
from eca_ref.train.evaluate import evaluate_arrays
from eca_ref.train.interrupt import SigintFlag
from eca_ref.train.optim import sgd_init
from eca_ref.train.result import TrainResult
from eca_ref.train.rundir import append_metrics, prepare_run_dir, write_metrics, write_run_config
from eca_ref.train.runner import check_cores, use_runner
from eca_ref.train.schedule import Schedule
from eca_ref.train.state import RunState, all_finite, empty_partial, save_state, state_from_checkpoint
from eca_ref.train.step import train_step
from eca_ref.validation import check_int

__all__ = ["resume", "train"]

_schedule = schedule_for          # the name benchmarks/train_torch_twin.py imports


def _notify(reporter, name: str, *args):
    fn = getattr(reporter, name, None) if reporter is not None else None
    if fn is not None:
        fn(*args)


# ----------------------------------------------------------------------------------------------
# public entry points


def train(cfg: TrainConfig, out, *, data_dir=None, stop_after: int | None = None, reporter=None,
          threads: int | None = None, workers: str | None = None, engine: str | None = None, runner=None,
          test_every: int = 1) -> TrainResult:
    """Train a new run into directory ``out``; returns a :class:`TrainResult`.

    Args:
        cfg: the run's configuration.
        out: run directory (created; must not hold a run already).
        data_dir: CIFAR-10 location (else $ECA_REF_DATA, else ~/.cache/eca-ref).
        stop_after: end this call cleanly after this many epochs (checkpoint written); continue
            later with :func:`resume`.
        reporter: optional object with any of the methods ``on_start(info)``,
            ``on_epoch_start(epoch, epochs, n_batches, first_batch)``,
            ``on_batch(epoch, batch, n_batches, loss, acc, images_per_s, lr)``,
            ``on_epoch_end(metrics)``; used by the CLI for the progress bar.
        threads: CPU cores; each batch runs as one shard per core; None: every available core.
            The same seed and count give bit-identical weights.
        workers: what runs the shards: "processes" (worker processes; fastest) or "threads";
            None: the enclosing ``eca_ref.engine.cores`` block's kind, else processes. Same
            results either way.
        engine: "fast" (None: the default) or "reference" (the plain reference code on one core:
            slow, readable, the same numbers to float32 rounding). Not part of the recipe: a run
            may be resumed with the other engine (its weights then equal the straight run's only
            to rounding). Recorded in each line of metrics.jsonl, with threads and workers.
        runner: the :class:`eca_ref.engine.Runner` of an open ``eca_ref.engine.cores`` block, to use
            instead of opening a block (``threads``, ``workers``, ``engine`` given with it must
            agree with it).
        test_every: evaluate on the test set after every ``test_every``-th epoch and after the last
            one (1: every epoch). A pass over the test set costs 6-9% of an epoch; skipping it
            changes no weight (evaluation uses the running BN statistics and no randomness).
    """
    if not isinstance(cfg, TrainConfig):
        raise InputError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if stop_after is not None:
        check_int(stop_after, "stop_after", min_value=1)
    check_cores(threads, workers, engine, runner)
    check_int(test_every, "test_every", min_value=1)
    run_dir = prepare_run_dir(out, new=True)
    data = load_data(cfg, data_dir)
    init_ss, data_ss = np.random.SeedSequence(cfg.seed).spawn(2)
    params, buffers = init_resnet(cfg.model_config(), np.random.default_rng(init_ss), dtype=np.float32,
                                  zero_init_residual=cfg.zero_init_residual, init=cfg.init)
    st = RunState(params=params, buffers=buffers, momentum=sgd_init(params),
                  rng_state=np.random.default_rng(data_ss).bit_generator.state)
    sched = schedule_for(cfg, len(data.train_y))
    write_run_config(run_dir, cfg, sched, data)
    write_metrics(run_dir, [])
    save_state(run_dir, st, cfg, data, sched, "started")
    with use_runner(runner, threads, workers, engine) as run_model:
        return _run_epochs(run_dir, cfg, data, st, sched, stop_after=stop_after, reporter=reporter, resumed=False,
                           runner=run_model, test_every=test_every)


def resume(run_dir, *, data_dir=None, stop_after: int | None = None, reporter=None,
           expect: dict | None = None, threads: int | None = None, workers: str | None = None,
           engine: str | None = None, runner=None, test_every: int = 1) -> TrainResult:
    """Continue the run saved in ``run_dir`` with its saved configuration, to its planned epochs.

    ``expect`` maps config fields to values the caller wants (e.g. options given on a command
    line together with ``--resume``); any that differ from the saved config raise CheckpointError
    (a resumed run cannot change its recipe). A finished run returns at once. ``threads``,
    ``workers``, ``engine`` and ``runner`` as for :func:`train` (a run resumed with the engine and
    thread count it was started with continues bit-identically). ``test_every`` as for
    :func:`train` (it is not part of the recipe: a resumed run may evaluate more or less often
    than it did).
    """
    if stop_after is not None:
        check_int(stop_after, "stop_after", min_value=1)
    check_cores(threads, workers, engine, runner)
    check_int(test_every, "test_every", min_value=1)
    groups, meta = load_checkpoint(run_dir)
    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    try:
        cfg = TrainConfig.from_dict(meta.get("config"))
    except (TypeError, InputError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{run_dir}: the saved config is invalid ({exc})") from None
    if expect:
        saved = cfg.to_dict()
        clash = [f"{k}={v!r} (saved: {saved[k]!r})" for k, v in expect.items() if k in saved and v != saved[k]]
        if clash:
            raise CheckpointError(f"--resume {run_dir}: options contradict the saved config: {', '.join(clash)}; "
                                  "drop them to continue the run as it was started, or start a new run with --out")
    st = state_from_checkpoint(run_dir, groups, meta, cfg)
    prepare_run_dir(run_dir, new=False)
    dmeta = meta.get("data") or {}
    data = load_data(cfg, data_dir, mean=dmeta.get("mean"), std=dmeta.get("std"))
    if data.fingerprint != dmeta.get("train_fingerprint"):
        raise CheckpointError(f"--resume {run_dir}: the training data in {data.root} is not the data this run "
                              f"was trained on ({len(data.train_y)} images, fingerprint {data.fingerprint}; saved: "
                              f"{dmeta.get('n_train')} images, {dmeta.get('train_fingerprint')}); point --data-dir at that copy")
    sched = schedule_for(cfg, len(data.train_y))
    write_metrics(run_dir, st.metrics)          # drop lines of epochs after the checkpoint, if any
    with use_runner(runner, threads, workers, engine) as run_model:
        return _run_epochs(run_dir, cfg, data, st, sched, stop_after=stop_after, reporter=reporter, resumed=True,
                           runner=run_model, test_every=test_every)


# ----------------------------------------------------------------------------------------------
# the loop


def _run_epochs(run_dir: Path, cfg: TrainConfig, data: TrainData, st: RunState, sched: Schedule, *, stop_after,
                reporter, resumed: bool, runner, test_every: int) -> TrainResult:
    xp = get_xp()
    t_call = time.perf_counter()
    mcfg = cfg.model_config()
    opt = cfg.sgd()
    decay = frozenset(decay_keys(st.params))
    n_train = len(data.train_y)
    n_batches = -(-n_train // cfg.batch_size)
    rng = np.random.default_rng()
    rng.bit_generator.state = st.rng_state

    def result(status: str, message: str) -> TrainResult:
        return TrainResult(status=status, run_dir=run_dir, config=cfg, epoch=st.epoch, step=st.step,
                           metrics=list(st.metrics), seconds=time.perf_counter() - t_call, message=message,
                           params=st.params, buffers=st.buffers, momentum=st.momentum)

    _notify(reporter, "on_start", {
        "run_dir": run_dir, "config": cfg, "resumed": resumed, "epoch": st.epoch, "step": st.step,
        "n_train": n_train, "n_test": len(data.test_y), "steps_per_epoch": n_batches,
        "total_steps": sched.total_steps, "parameters": count_parameters(mcfg), "data_root": data.root,
        "threads": runner.n, "workers": runner.workers, "engine": runner.engine})
    if st.epoch >= cfg.epochs:
        return result("finished", f"the run in {run_dir} is already complete ({st.epoch} epochs)")

    epochs_this_call = 0
    # overflow warnings of a diverging run are replaced by one clear message (the loss is checked)
    with SigintFlag() as sigint, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while st.epoch < cfg.epochs:
            epoch_rng_state = rng.bit_generator.state          # == st.rng_state
            first = st.batch
            _notify(reporter, "on_epoch_start", st.epoch + 1, cfg.epochs, n_batches, first)
            t0 = time.perf_counter() - st.partial["seconds"]
            batches = iterate_batches(data.train_x, data.train_y, cfg.batch_size, rng=rng, shuffle=True,
                                      augment=cfg.augment, mean=data.mean, std=data.std, drop_last=False)
            for b, (x, y) in enumerate(batches):
                if b < first:
                    continue                                   # replay the generator up to the resume point
                lr = sched(st.step)
                x, y = xp.asarray(x), xp.asarray(y)
                out = train_step(runner, x, y, st.params, st.buffers, st.momentum, model_cfg=mcfg, lr=lr,
                                 decay=decay, sgd=opt, label_smoothing=cfg.label_smoothing)
                loss = out.loss
                if not math.isfinite(loss):             # the state of before this step is kept
                    msg = (f"training diverged: the loss became {loss} at epoch {st.epoch + 1}, step {st.step + 1} "
                           f"(lr {lr:.4g}); stopped without saving this state. The last good checkpoint "
                           f"({st.saved}) is kept in {run_dir}. Try a lower --lr.")
                    return result("diverged", msg)
                st.params, st.buffers, st.momentum = out.params, out.buffers, out.momentum
                st.step += 1
                st.batch = b + 1
                p = st.partial
                p["loss_sum"] += loss * len(y)
                p["correct"] += out.correct
                p["seen"] += int(len(y))
                p["seconds"] = time.perf_counter() - t0
                _notify(reporter, "on_batch", st.epoch + 1, st.batch, n_batches, p["loss_sum"] / p["seen"],
                        p["correct"] / p["seen"], p["seen"] / max(p["seconds"], 1e-9), lr)
                if sigint.flag:
                    st.rng_state = epoch_rng_state
                    if not all_finite(st.params, st.buffers, st.momentum):
                        return result("diverged", f"training diverged (NaN/inf weights) at step {st.step}; "
                                                  f"the last good checkpoint ({st.saved}) is kept in {run_dir}")
                    save_state(run_dir, st, cfg, data, sched, "interrupted")
                    return result("interrupted", f"interrupted at epoch {st.epoch + 1}, batch {st.batch}/{n_batches} "
                                                 f"(step {st.step}); checkpoint written to {run_dir}")
            # ---- end of epoch: evaluate, checkpoint, log
            p = st.partial
            train_seconds = time.perf_counter() - t0
            tested = (st.epoch + 1) % test_every == 0 or st.epoch + 1 >= cfg.epochs
            ev = (evaluate_arrays(st.params, st.buffers, mcfg, data.test_x, data.test_y, data.mean, data.std,
                                  runner=runner) if tested else {"loss": None, "acc": None})
            seconds = time.perf_counter() - t0
            m = {"epoch": st.epoch + 1, "step": st.step, "lr": sched(st.step - 1),
                 "train_loss": p["loss_sum"] / max(p["seen"], 1), "train_acc": p["correct"] / max(p["seen"], 1),
                 "test_loss": ev["loss"], "test_acc": ev["acc"], "seconds": seconds,
                 "train_seconds": train_seconds, "images_per_s": p["seen"] / max(train_seconds, 1e-9),
                 "threads": runner.n, "workers": runner.workers, "engine": runner.engine}
            if not all_finite(st.params, st.buffers, st.momentum) or (tested and not math.isfinite(ev["loss"])):
                return result("diverged", f"training diverged (NaN/inf weights or test loss) at the end of epoch "
                                          f"{st.epoch + 1}; the last good checkpoint ({st.saved}) "
                                          f"is kept in {run_dir}. Try a lower --lr.")
            st.metrics.append(json_safe(m))
            st.epoch += 1
            st.batch = 0
            st.rng_state = rng.bit_generator.state
            st.partial = empty_partial()
            done = st.epoch >= cfg.epochs
            save_state(run_dir, st, cfg, data, sched, "finished" if done else "running")
            append_metrics(run_dir, st.metrics[-1])
            _notify(reporter, "on_epoch_end", dict(st.metrics[-1]))
            epochs_this_call += 1
            if done:
                break
            if sigint.flag:
                return result("interrupted", f"interrupted after epoch {st.epoch} (step {st.step}); "
                                             f"checkpoint written to {run_dir}")
            if stop_after is not None and epochs_this_call >= stop_after:
                return result("stopped", f"stopped after {epochs_this_call} epoch(s) as asked (--stop-after); "
                                         f"epoch {st.epoch}/{cfg.epochs} saved in {run_dir}")
    return result("finished", f"finished {cfg.epochs} epochs; test accuracy {st.metrics[-1]['test_acc']:.2%}")
