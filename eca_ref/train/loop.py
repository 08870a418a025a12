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

A step is: forward in train mode, softmax cross-entropy, backward, one SGD
update with the learning rate of the schedule at this step. The whole state of
a run is ``(params, BN buffers, momentum buffers, step, epoch, batch within the
epoch, the data generator's state at the start of the epoch, the epoch's running
sums)``; a checkpoint stores all of it, so resuming replays the same batches
(same shuffle, same augmentation) and gives bit-identical weights to a run that
never stopped. Checkpoints are written at the start, at the end of every epoch,
and when Ctrl-C is pressed (the first Ctrl-C finishes the current step, writes a
checkpoint and returns; a second one stops at once).

Randomness: ``numpy.random.SeedSequence(seed)`` is split into two independent
generators, one for the initial weights and one for shuffling and augmentation.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from eca_ref.backend import asnumpy, get_xp
from eca_ref.errors import CheckpointError, InputError, InputTypeError
from eca_ref.train.checkpoint import (
    has_checkpoint,
    json_safe,
    load_checkpoint,
    save_checkpoint,
    write_atomic,
    write_json_atomic,
)
from eca_ref.train.optim import SGDConfig, sgd_init, sgd_step
from eca_ref.train.schedule import SCHEDULES, Schedule
from eca_ref.validation import check_int

EVAL_BATCH = 128                    # eval forward keeps its caches: same memory as a training step


# ----------------------------------------------------------------------------------------------
# configuration and result


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's weights. Two runs with equal configs on the same data
    produce the same weights, bit for bit."""

    attention: str = "eca"
    depth: int = 8
    width: int = 16
    k: int | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.2                     # peak learning rate of the schedule (0.2 beat 0.1 in 10 epochs: docs/results.md)
    schedule: str = "onecycle"
    warmup: float = 0.3                 # fraction of the steps rising to the peak
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    augment: bool = True
    zero_init_residual: bool = False    # each block's second BN weight starts at 0 (the block starts as its shortcut)
    init: str = "kaiming"               # conv weights: "kaiming" (normal, fan out) or "pytorch" (Conv2d's default)
    seed: int = 0
    limit: int | None = None            # use only the first `limit` train and test images

    def __post_init__(self):
        check_int(self.epochs, "epochs", min_value=1)
        check_int(self.batch_size, "batch_size", min_value=1)
        check_int(self.seed, "seed", min_value=0)
        if self.limit is not None:
            check_int(self.limit, "limit", min_value=1)
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise InputError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0.0 <= self.label_smoothing < 1.0):
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not (isinstance(self.warmup, (int, float)) and 0.0 <= self.warmup < 1.0):
            raise InputError(f"warmup must be a fraction in [0, 1), got {self.warmup!r}")
        if not isinstance(self.zero_init_residual, bool):
            raise InputError(f"zero_init_residual must be true or false, got {self.zero_init_residual!r}")
        from eca_ref.models.resnet import CONV_INITS
        if self.init not in CONV_INITS:
            raise InputError(f"init must be one of {', '.join(CONV_INITS)}, got {self.init!r}")
        SGDConfig(self.momentum, self.weight_decay, self.nesterov)
        self.model_config()                                   # validates attention, depth, width, k

    def model_config(self):
        from eca_ref.models import ResNetConfig
        return ResNetConfig(depth=self.depth, width=self.width, attention=self.attention, k=self.k, num_classes=10)

    def sgd(self) -> SGDConfig:
        return SGDConfig(self.momentum, self.weight_decay, self.nesterov)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise CheckpointError(f"saved config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"saved config has unknown fields {unknown} (written by another version?)")
        return cls(**d)


# Named recipes: the fields each one sets (every other field keeps TrainConfig's default).
# "d20": ResNet-20 (0.27M parameters) for 30 epochs at peak learning rate 0.4 with 15% warmup.
# "d14w24": the same recipe on ResNet-14 of width 24 (fewer and wider layers: 1.44x the parameters,
# 1.3-1.5x the time a step) for 25 epochs, the longer run with the best accuracy measured inside 90
# minutes. Both take 80-90 minutes on the 2-core machines of docs/results.md (d14w24 with test_every=25),
# where they were measured (test accuracy there).
PRESETS = {
    "default": {},
    "d20": {"depth": 20, "epochs": 30, "lr": 0.4, "warmup": 0.15},
    "d14w24": {"depth": 14, "width": 24, "epochs": 25, "lr": 0.4, "warmup": 0.15},
}


def preset_config(name: str, **overrides) -> TrainConfig:
    """TrainConfig of a named preset (see PRESETS), with any field overridden by keyword."""
    if not isinstance(name, str) or name not in PRESETS:
        raise InputError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return TrainConfig(**{**PRESETS[name], **overrides})


@dataclass
class TrainResult:
    """What :func:`train` and :func:`resume` return.

    status: "finished" (all planned epochs done), "stopped" (``stop_after`` reached),
    "interrupted" (Ctrl-C; a checkpoint was written) or "diverged" (a NaN/inf loss;
    the last good checkpoint is kept).
    """

    status: str
    run_dir: Path
    config: TrainConfig
    epoch: int                      # finished epochs
    step: int                       # optimizer steps done
    metrics: list = field(default_factory=list)
    seconds: float = 0.0            # wall time of this call
    message: str = ""
    params: dict = field(default_factory=dict, repr=False)
    buffers: dict = field(default_factory=dict, repr=False)
    momentum: dict = field(default_factory=dict, repr=False)

    @property
    def test_acc(self) -> float | None:
        return self.metrics[-1]["test_acc"] if self.metrics else None


# ----------------------------------------------------------------------------------------------
# data, model, evaluation


@dataclass
class _Data:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    fingerprint: str
    root: Path


def _fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(memoryview(np.ascontiguousarray(labels)))
    h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return h.hexdigest()[:16]


def load_data(cfg: TrainConfig, data_dir=None, *, mean=None, std=None) -> _Data:
    """The (limited) train and test splits, and the per-channel statistics of the train split."""
    from eca_ref.data import channel_stats, load_cifar10, resolve_root

    root = resolve_root(data_dir)
    train_x, train_y = load_cifar10(root, split="train")
    test_x, test_y = load_cifar10(root, split="test")
    if cfg.limit is not None:
        train_x, train_y = train_x[: cfg.limit], train_y[: cfg.limit]
        test_x, test_y = test_x[: cfg.limit], test_y[: cfg.limit]
    if mean is None or std is None:
        mean, std = channel_stats(train_x)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return _Data(train_x, train_y, test_x, test_y, mean, std, _fingerprint(train_x, train_y), Path(root))


def predict(params: dict, buffers: dict, model_cfg, images: np.ndarray, mean, std, *,
            batch_size: int = EVAL_BATCH, tta: bool = False) -> np.ndarray:
    """Logits ``(N, num_classes)`` float32 of the model in eval mode (running BN statistics).

    ``images`` is uint8 ``(N, 3, 32, 32)``; it is normalised with ``mean`` and ``std`` batch by batch.
    ``tta``: test-time augmentation by horizontal flip: the mean of the logits of each image and of
    its mirror image (the flip is one of the training augmentations; twice the cost).
    """
    if not isinstance(tta, bool):
        raise InputTypeError(f"tta must be True or False, got {tta!r}")
    from eca_ref.data import iterate_batches
    from eca_ref.models import resnet_forward

    labels = np.zeros(len(images), np.int64)
    out = []
    for x, _ in iterate_batches(images, labels, batch_size, rng=None, shuffle=False, augment=False,
                                mean=mean, std=std, drop_last=False):
        logits, _, _ = resnet_forward(x, params, buffers, model_cfg, train=False)   # (B, classes)
        if tta:
            mirrored, _, _ = resnet_forward(x[..., ::-1], params, buffers, model_cfg, train=False)
            logits = (logits + mirrored) * 0.5
        out.append(asnumpy(logits))
    return np.concatenate(out, axis=0) if out else np.zeros((0, model_cfg.num_classes), np.float32)


def evaluate_arrays(params, buffers, model_cfg, images, labels, mean, std, *, batch_size=EVAL_BATCH,
                    tta: bool = False) -> dict:
    """Test loss (plain cross-entropy), accuracy and predictions on ``images`` (``tta``: see :func:`predict`)."""
    logits = predict(params, buffers, model_cfg, images, mean, std, batch_size=batch_size, tta=tta).astype(np.float64)
    z = logits - logits.max(axis=1, keepdims=True)                         # (N, classes)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(len(labels)), labels].mean()) if len(labels) else float("nan")
    pred = logits.argmax(axis=1)
    return {"loss": loss, "acc": float((pred == labels).mean()) if len(labels) else float("nan"), "pred": pred}


# ----------------------------------------------------------------------------------------------
# the run directory


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


def _write_metrics(run_dir: Path, metrics: list) -> None:
    text = "".join(json.dumps(m, allow_nan=False) + "\n" for m in metrics)
    write_atomic(run_dir / "metrics.jsonl", text.encode())


def _append_metrics(run_dir: Path, m: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(m, allow_nan=False) + "\n")


def _eca_version() -> str:
    try:
        from eca_ref import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


# ----------------------------------------------------------------------------------------------
# Ctrl-C


class _SigintFlag:
    """While active, the first SIGINT only sets ``.flag`` (the loop then checkpoints and returns);
    a second SIGINT raises KeyboardInterrupt at once. Outside the main thread this is a no-op."""

    def __init__(self):
        self.flag = False
        self._prev = None
        self._installed = False

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._prev)
        return False


# ----------------------------------------------------------------------------------------------
# state


@dataclass
class _State:
    params: dict
    buffers: dict
    momentum: dict
    step: int = 0
    epoch: int = 0                    # finished epochs
    batch: int = 0                    # batches done in the current epoch
    rng_state: dict = None            # data generator at the start of the current epoch
    partial: dict = field(default_factory=lambda: {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0})
    metrics: list = field(default_factory=list)
    saved: str = ""                   # what the checkpoint on disk holds, for messages

    def where(self) -> str:
        return f"epoch {self.epoch}" + (f", batch {self.batch}" if self.batch else "") + f", step {self.step}"


def _save(run_dir: Path, st: _State, cfg: TrainConfig, data: _Data, sched: Schedule, status: str) -> None:
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
        "data": {"mean": data.mean.tolist(), "std": data.std.tolist(), "n_train": int(len(data.train_y)),
                 "n_test": int(len(data.test_y)), "train_fingerprint": data.fingerprint},
        "eca_ref_version": _eca_version(),
        "numpy_version": np.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        save_checkpoint(run_dir, {"params": st.params, "buffers": st.buffers, "momentum": st.momentum},
                        json_safe(meta))
    except OSError as exc:
        raise InputError(f"cannot write a checkpoint to {run_dir}: {exc.strerror or exc}") from None
    st.saved = st.where()


def _all_finite(*groups: dict) -> bool:
    xp = get_xp()
    return all(bool(xp.isfinite(a).all()) for g in groups for a in g.values() if a.dtype.kind == "f")


def _notify(reporter, name: str, *args):
    fn = getattr(reporter, name, None) if reporter is not None else None
    if fn is not None:
        fn(*args)


# ----------------------------------------------------------------------------------------------
# public entry points


def train(cfg: TrainConfig, out, *, data_dir=None, stop_after: int | None = None, reporter=None,
          threads: int | None = None, workers: str | None = None, test_every: int = 1) -> TrainResult:
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
        workers: what runs the shards: "processes" (worker processes, :mod:`eca_ref.procshards`;
            fastest) or "threads" (:mod:`eca_ref.parallel`); None: the enclosing
            ``procshards.use_cores`` block's kind, else processes. Same results either way.
        test_every: evaluate on the test set after every ``test_every``-th epoch and after the last
            one (1: every epoch). A pass over the test set costs 6-9% of an epoch; skipping it
            changes no weight (evaluation uses the running BN statistics and no randomness).
    """
    from eca_ref.models import init_resnet

    if not isinstance(cfg, TrainConfig):
        raise InputError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if stop_after is not None:
        check_int(stop_after, "stop_after", min_value=1)
    _check_cores(threads, workers)
    check_int(test_every, "test_every", min_value=1)
    run_dir = prepare_run_dir(out, new=True)
    data = load_data(cfg, data_dir)
    init_ss, data_ss = np.random.SeedSequence(cfg.seed).spawn(2)
    params, buffers = init_resnet(cfg.model_config(), np.random.default_rng(init_ss), dtype=np.float32,
                                  zero_init_residual=cfg.zero_init_residual, init=cfg.init)
    st = _State(params=params, buffers=buffers, momentum=sgd_init(params),
                rng_state=np.random.default_rng(data_ss).bit_generator.state)
    sched = _schedule(cfg, len(data.train_y))
    write_json_atomic(run_dir / "config.json", json_safe({
        "train": cfg.to_dict(), "schedule": sched.to_dict(),
        "data": {"root": str(data.root), "n_train": len(data.train_y), "n_test": len(data.test_y),
                 "mean": data.mean.tolist(), "std": data.std.tolist(), "train_fingerprint": data.fingerprint},
        "eca_ref_version": _eca_version(), "numpy_version": np.__version__,
    }))
    _write_metrics(run_dir, [])
    _save(run_dir, st, cfg, data, sched, "started")
    return _run(run_dir, cfg, data, st, sched, stop_after=stop_after, reporter=reporter, resumed=False,
                threads=threads, workers=workers, test_every=test_every)


def resume(run_dir, *, data_dir=None, stop_after: int | None = None, reporter=None,
           expect: dict | None = None, threads: int | None = None, workers: str | None = None,
           test_every: int = 1) -> TrainResult:
    """Continue the run saved in ``run_dir`` with its saved configuration, to its planned epochs.

    ``expect`` maps config fields to values the caller wants (e.g. options given on a command
    line together with ``--resume``); any that differ from the saved config raise CheckpointError
    (a resumed run cannot change its recipe). A finished run returns at once. ``threads`` as
    for :func:`train` (a run resumed with the thread count it was started with continues
    bit-identically). ``test_every`` as for :func:`train` (it is not part of the recipe: a resumed
    run may evaluate more or less often than it did).
    """
    if stop_after is not None:
        check_int(stop_after, "stop_after", min_value=1)
    _check_cores(threads, workers)
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
    st = _state_from_checkpoint(run_dir, groups, meta, cfg)
    prepare_run_dir(run_dir, new=False)
    dmeta = meta.get("data") or {}
    data = load_data(cfg, data_dir, mean=dmeta.get("mean"), std=dmeta.get("std"))
    if data.fingerprint != dmeta.get("train_fingerprint"):
        raise CheckpointError(f"--resume {run_dir}: the training data in {data.root} is not the data this run "
                              f"was trained on ({len(data.train_y)} images, fingerprint {data.fingerprint}; saved: "
                              f"{dmeta.get('n_train')} images, {dmeta.get('train_fingerprint')}); point --data-dir at that copy")
    sched = _schedule(cfg, len(data.train_y))
    _write_metrics(run_dir, st.metrics)          # drop lines of epochs after the checkpoint, if any
    return _run(run_dir, cfg, data, st, sched, stop_after=stop_after, reporter=reporter, resumed=True,
                threads=threads, workers=workers, test_every=test_every)


def _check_cores(threads, workers) -> None:
    from eca_ref.procshards import WORKERS

    if threads is not None:
        check_int(threads, "threads", min_value=1)
    if workers is not None and workers not in WORKERS:
        raise InputError(f"workers must be one of {', '.join(WORKERS)}, got {workers!r}")


def _schedule(cfg: TrainConfig, n_train: int) -> Schedule:
    steps_per_epoch = -(-n_train // cfg.batch_size)
    return Schedule(cfg.schedule, peak=float(cfg.lr), total_steps=cfg.epochs * steps_per_epoch, warmup=float(cfg.warmup))


def _state_from_checkpoint(run_dir: Path, groups: dict, meta: dict, cfg: TrainConfig) -> _State:
    from eca_ref.models import init_resnet

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
        st = _State(params=out["params"], buffers=out["buffers"], momentum=out["momentum"],
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
    if len(st.metrics) != st.epoch:
        raise CheckpointError(f"{run_dir}: corrupt checkpoint metadata ({len(st.metrics)} epochs of metrics for epoch {st.epoch})")
    return st


def _run(run_dir: Path, cfg: TrainConfig, data: _Data, st: _State, sched: Schedule, *, stop_after, reporter,
         resumed: bool, threads: int | None, workers: str | None, test_every: int) -> TrainResult:
    from eca_ref.procshards import active_pool, use_cores

    with use_cores(threads, workers) as n_threads:
        kind = "processes" if active_pool() is not None else "threads"
        return _run_epochs(run_dir, cfg, data, st, sched, stop_after=stop_after, reporter=reporter,
                           resumed=resumed, n_threads=n_threads, workers=kind, test_every=test_every)


def _run_epochs(run_dir: Path, cfg: TrainConfig, data: _Data, st: _State, sched: Schedule, *, stop_after,
                reporter, resumed: bool, n_threads: int, workers: str, test_every: int) -> TrainResult:
    from eca_ref.data import iterate_batches
    from eca_ref.functional.loss import softmax_cross_entropy
    from eca_ref.models import count_parameters, decay_keys, resnet_backward, resnet_forward

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
        "threads": n_threads, "workers": workers})
    if st.epoch >= cfg.epochs:
        return result("finished", f"the run in {run_dir} is already complete ({st.epoch} epochs)")

    epochs_this_call = 0
    # overflow warnings of a diverging run are replaced by one clear message (the loss is checked)
    with _SigintFlag() as sigint, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
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
                logits, cache, new_buffers = resnet_forward(x, st.params, st.buffers, mcfg, train=True)  # (B, 10)
                loss, dlogits = softmax_cross_entropy(logits, y, label_smoothing=cfg.label_smoothing,
                                                     check_finite=False)
                loss = float(loss)
                if not math.isfinite(loss):
                    msg = (f"training diverged: the loss became {loss} at epoch {st.epoch + 1}, step {st.step + 1} "
                           f"(lr {lr:.4g}); stopped without saving this state. The last good checkpoint "
                           f"({st.saved}) is kept in {run_dir}. Try a lower --lr.")
                    return result("diverged", msg)
                grads = resnet_backward(dlogits, cache)
                st.params, st.momentum = sgd_step(st.params, grads, st.momentum, lr=lr, decay=decay,
                                                  momentum=opt.momentum, weight_decay=opt.weight_decay,
                                                  nesterov=opt.nesterov)
                st.buffers = new_buffers
                st.step += 1
                st.batch = b + 1
                correct = int(asnumpy((logits.argmax(axis=1) == y).sum()))
                p = st.partial
                p["loss_sum"] += loss * len(y)
                p["correct"] += correct
                p["seen"] += int(len(y))
                p["seconds"] = time.perf_counter() - t0
                _notify(reporter, "on_batch", st.epoch + 1, st.batch, n_batches, p["loss_sum"] / p["seen"],
                        p["correct"] / p["seen"], p["seen"] / max(p["seconds"], 1e-9), lr)
                if sigint.flag:
                    st.rng_state = epoch_rng_state
                    if not _all_finite(st.params, st.buffers, st.momentum):
                        return result("diverged", f"training diverged (NaN/inf weights) at step {st.step}; "
                                                  f"the last good checkpoint ({st.saved}) is kept in {run_dir}")
                    _save(run_dir, st, cfg, data, sched, "interrupted")
                    return result("interrupted", f"interrupted at epoch {st.epoch + 1}, batch {st.batch}/{n_batches} "
                                                 f"(step {st.step}); checkpoint written to {run_dir}")
            # ---- end of epoch: evaluate, checkpoint, log
            p = st.partial
            train_seconds = time.perf_counter() - t0
            tested = (st.epoch + 1) % test_every == 0 or st.epoch + 1 >= cfg.epochs
            ev = (evaluate_arrays(st.params, st.buffers, mcfg, data.test_x, data.test_y, data.mean, data.std)
                  if tested else {"loss": None, "acc": None})
            seconds = time.perf_counter() - t0
            m = {"epoch": st.epoch + 1, "step": st.step, "lr": sched(st.step - 1),
                 "train_loss": p["loss_sum"] / max(p["seen"], 1), "train_acc": p["correct"] / max(p["seen"], 1),
                 "test_loss": ev["loss"], "test_acc": ev["acc"], "seconds": seconds,
                 "train_seconds": train_seconds, "images_per_s": p["seen"] / max(train_seconds, 1e-9),
                 "threads": n_threads, "workers": workers}
            if not _all_finite(st.params, st.buffers, st.momentum) or (tested and not math.isfinite(ev["loss"])):
                return result("diverged", f"training diverged (NaN/inf weights or test loss) at the end of epoch "
                                          f"{st.epoch + 1}; the last good checkpoint ({st.saved}) "
                                          f"is kept in {run_dir}. Try a lower --lr.")
            st.metrics.append(json_safe(m))
            st.epoch += 1
            st.batch = 0
            st.rng_state = rng.bit_generator.state
            st.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            done = st.epoch >= cfg.epochs
            _save(run_dir, st, cfg, data, sched, "finished" if done else "running")
            _append_metrics(run_dir, st.metrics[-1])
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
