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
Ctrl-C is pressed or SIGTERM arrives (the first one finishes the current step, writes a checkpoint
and returns; a second one stops at once). A run holds the lock of its directory
(:mod:`eca_ref.train.lock`) while it runs; a resumed run checks every field of the checkpoint
(:mod:`eca_ref.train.checkmeta`) before it writes anything, and finds its data where the run
recorded it when no ``data_dir`` is given (:mod:`eca_ref.train.datasource`).

Randomness: ``numpy.random.SeedSequence(seed)`` is split into two independent
generators, one for the initial weights and one for shuffling and augmentation.

The modules around the loop: config (TrainConfig, PRESETS), result (TrainResult), dataset
(load_data), evaluate (predict, evaluate_arrays), rundir (config.json, metrics.jsonl), interrupt
(Ctrl-C and SIGTERM), state (the checkpointed state), step (one step), runner (the model passes),
lock, checkmeta, datasource.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from eca_ref.backend import get_xp
from eca_ref.data import iterate_batches
from eca_ref.errors import CheckpointError, InputError
from eca_ref.models import count_parameters, decay_keys, init_resnet
from eca_ref.train.checkmeta import check_progress
from eca_ref.train.checkpoint import META_NAME, json_safe, load_checkpoint
from eca_ref.train.config import TrainConfig, schedule_for
from eca_ref.train.datasource import choose_data_dir
from eca_ref.train.dataset import TrainData, load_data
from eca_ref.train.evaluate import evaluate_arrays
from eca_ref.train.interrupt import StopFlag
from eca_ref.train.lock import RunLock
from eca_ref.train.optim import sgd_init
from eca_ref.train.result import TrainResult
from eca_ref.train.rundir import prepare_run_dir, refuse_existing_run, write_metrics, write_run_config, writing
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
            ``on_epoch_end(metrics)`` and ``on_note(line)`` (a one-line message: a stale lock
            taken over, the recorded data location used); used by the CLI for the progress bar.
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
    run_dir = prepare_run_dir(out, new=False)
    with _locked(run_dir, reporter):
        refuse_existing_run(run_dir)
        return _train_new(cfg, run_dir, data_dir, stop_after=stop_after, reporter=reporter, runner=runner,
                          threads=threads, workers=workers, engine=engine, test_every=test_every)


@contextmanager
def _locked(run_dir: Path, reporter):
    """Hold ``run_dir``'s lock (RunLockedError if another process does; RunWriteError if it
    cannot be written)."""
    lock = RunLock(run_dir, note=lambda line: _notify(reporter, "on_note", line))
    with writing(lock.path):
        lock.__enter__()
    try:
        yield lock
    finally:
        lock.__exit__(None, None, None)


def _train_new(cfg, run_dir, data_dir, *, stop_after, reporter, runner, threads, workers, engine, test_every):
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
    with StopFlag() as stop, use_runner(runner, threads, workers, engine) as run_model:
        return _run_epochs(stop, run_dir, cfg, data, st, sched, stop_after=stop_after, reporter=reporter, resumed=False,
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
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name == META_NAME:
        run_dir = run_dir.parent
    load_checkpoint(run_dir)                    # a missing or corrupt checkpoint is refused before the lock
    prepare_run_dir(run_dir, new=False)
    with _locked(run_dir, reporter):
        return _resume_locked(run_dir, data_dir, expect, stop_after=stop_after, reporter=reporter, runner=runner,
                              threads=threads, workers=workers, engine=engine, test_every=test_every)


def _resume_locked(run_dir: Path, data_dir, expect, *, stop_after, reporter, runner, threads, workers, engine,
                   test_every):
    groups, meta = load_checkpoint(run_dir)     # again, under the lock: the state to continue from
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
    dmeta = meta.get("data") or {}
    choice = choose_data_dir(run_dir, data_dir)
    data = load_data(cfg, choice.root)          # mean and std computed from the images: checked below
    if data.fingerprint != dmeta.get("train_fingerprint"):
        raise CheckpointError(f"--resume {run_dir}: the training data in {data.root} is not the data this run "
                              f"was trained on ({len(data.train_y)} images, fingerprint {data.fingerprint}; saved: "
                              f"{dmeta.get('n_train')} images, {dmeta.get('train_fingerprint')})"
                              f"{' (' + choice.note + ')' if choice.note else ''}; point --data-dir at that copy")
    if choice.note:
        _notify(reporter, "on_note", choice.note)
    sched = schedule_for(cfg, len(data.train_y))
    check_progress(run_dir, meta, st, cfg, data, sched)     # before anything is written
    data.mean, data.std = np.asarray(dmeta["mean"], np.float32), np.asarray(dmeta["std"], np.float32)
    write_metrics(run_dir, st.metrics, resume_dir=run_dir)  # drop lines of epochs after the checkpoint, if any
    with StopFlag() as stop, use_runner(runner, threads, workers, engine) as run_model:
        return _run_epochs(stop, run_dir, cfg, data, st, sched, stop_after=stop_after, reporter=reporter, resumed=True,
                           runner=run_model, test_every=test_every)


# ----------------------------------------------------------------------------------------------
# the loop


def _by(stop: StopFlag) -> str:
    return "stopped by SIGTERM" if stop.signal_name == "SIGTERM" else "interrupted"


def _run_epochs(sigint: StopFlag, run_dir: Path, cfg: TrainConfig, data: TrainData, st: RunState, sched: Schedule, *, stop_after,
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
                           params=st.params, buffers=st.buffers, momentum=st.momentum,
                           signal=sigint.signal_name if status == "interrupted" else None)

    def diverged(what: str) -> TrainResult:
        # a resumed run keeps its recipe, and replaying the same state diverges the same way
        return result("diverged", f"{what}; stopped without saving this state. The last good checkpoint "
                                  f"({st.saved}) is kept in {run_dir}, but resuming it repeats the same steps "
                                  f"(a run keeps its recipe): start a new run with a lower --lr (this one's peak "
                                  f"is {cfg.lr:g}; e.g. --lr {cfg.lr / 2:g}) into another --out")

    _notify(reporter, "on_start", {
        "run_dir": run_dir, "config": cfg, "resumed": resumed, "epoch": st.epoch, "step": st.step,
        "n_train": n_train, "n_test": len(data.test_y), "steps_per_epoch": n_batches,
        "total_steps": sched.total_steps, "parameters": count_parameters(mcfg), "data_root": data.root,
        "threads": runner.n, "workers": runner.workers, "engine": runner.engine})
    if st.epoch >= cfg.epochs:
        return result("finished", f"the run in {run_dir} is already complete ({st.epoch} epochs)")

    epochs_this_call = 0
    # overflow warnings of a diverging run are replaced by one clear message (the loss is checked)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
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
                    return diverged(f"training diverged: the loss became {loss} at epoch {st.epoch + 1}, "
                                    f"step {st.step + 1} (lr {lr:.4g})")
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
                        return diverged(f"training diverged (NaN/inf weights) at step {st.step}")
                    save_state(run_dir, st, cfg, data, sched, "interrupted")
                    return result("interrupted", f"{_by(sigint)} at epoch {st.epoch + 1}, batch {st.batch}/{n_batches} "
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
                return diverged(f"training diverged (NaN/inf weights or test loss) at the end of epoch "
                                f"{st.epoch + 1}")
            st.metrics.append(json_safe(m))
            st.epoch += 1
            st.batch = 0
            st.rng_state = rng.bit_generator.state
            st.partial = empty_partial()
            done = st.epoch >= cfg.epochs
            save_state(run_dir, st, cfg, data, sched, "finished" if done else "running")
            write_metrics(run_dir, st.metrics, resume_dir=run_dir)     # atomic: never a half line
            _notify(reporter, "on_epoch_end", dict(st.metrics[-1]))
            epochs_this_call += 1
            if done:
                break
            if sigint.flag:
                return result("interrupted", f"{_by(sigint)} after epoch {st.epoch} (step {st.step}); "
                                             f"checkpoint written to {run_dir}")
            if stop_after is not None and epochs_this_call >= stop_after:
                return result("stopped", f"stopped after {epochs_this_call} epoch(s) as asked (--stop-after); "
                                         f"epoch {st.epoch}/{cfg.epochs} saved in {run_dir}")
    return result("finished", f"finished {cfg.epochs} epochs; test accuracy {st.metrics[-1]['test_acc']:.2%}")
