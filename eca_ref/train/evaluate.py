"""Evaluate a saved run on the CIFAR-10 test split: accuracy, per-class accuracy, confusion matrix::

    from eca_ref.train import evaluate_run
    r = evaluate_run("runs/eca_d8")
    r.accuracy, r.per_class["cat"], r.confusion.shape       # (10, 10): rows true, columns predicted

and the pieces the loop uses too: :func:`predict` (logits in eval mode) and :func:`evaluate_arrays`
(loss, accuracy and predictions on arrays). The model passes come from an
:class:`eca_ref.engine.Runner` (``threads``, ``workers``, ``engine``; see eca_ref.train.runner).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np  # host-side counting only

from eca_ref.backend import asnumpy, get_xp
from eca_ref.data import class_names, iterate_batches, load_cifar10, resolve_root
from eca_ref.errors import CheckpointError, InputError, InputTypeError
from eca_ref.functional.loss import cross_entropy_forward
from eca_ref.models import ResNetConfig
from eca_ref.train.checkpoint import load_checkpoint
from eca_ref.train.config import TrainConfig
from eca_ref.train.datasource import check_test_split, choose_data_dir
from eca_ref.train.runner import check_cores, use_runner
from eca_ref.validation import check_int

__all__ = ["EVAL_BATCH", "EvalResult", "LoadedRun", "confusion_matrix", "confusion_matrix_loop", "evaluate_arrays",
           "evaluate_run", "load_run", "load_test_split", "predict"]

EVAL_BATCH = 128                    # eval forward keeps its caches: same memory as a training step


def predict(params: dict, buffers: dict, model_cfg, images: np.ndarray, mean, std, *,
            batch_size: int = EVAL_BATCH, tta: bool = False, runner=None) -> np.ndarray:
    """Logits ``(N, num_classes)`` float32 of the model in eval mode (running BN statistics).

    ``images`` is uint8 ``(N, 3, 32, 32)``; it is normalised with ``mean`` and ``std`` batch by batch.
    ``tta``: test-time augmentation by horizontal flip: the mean of the logits of each image and of
    its mirror image (the flip is one of the training augmentations; twice the cost).
    ``runner``: the :class:`eca_ref.engine.Runner` that runs the model (None: the runner of an
    ``eca_ref.engine.cores(workers="threads")`` block opened for this call).
    """
    if not isinstance(tta, bool):
        raise InputTypeError(f"tta must be True or False, got {tta!r}")
    labels = np.zeros(len(images), np.int64)
    out = []
    with use_runner(runner, workers=None if runner is not None else "threads") as run:
        for x, _ in iterate_batches(images, labels, batch_size, rng=None, shuffle=False, augment=False,
                                    mean=mean, std=std, drop_last=False):
            logits, _, _ = run.forward(x, params, buffers, model_cfg, train=False)   # (B, classes)
            if tta:
                mirrored, _, _ = run.forward(x[..., ::-1], params, buffers, model_cfg, train=False)
                logits = (logits + mirrored) * 0.5
            out.append(asnumpy(logits))
    return np.concatenate(out, axis=0) if out else np.zeros((0, model_cfg.num_classes), np.float32)


def evaluate_arrays(params, buffers, model_cfg, images, labels, mean, std, *, batch_size=EVAL_BATCH,
                    tta: bool = False, runner=None) -> dict:
    """Test loss (plain cross-entropy, in float64), accuracy and predictions on ``images``
    (``tta``, ``runner``: see :func:`predict`)."""
    logits = predict(params, buffers, model_cfg, images, mean, std, batch_size=batch_size, tta=tta,
                     runner=runner).astype(np.float64)                    # (N, classes)
    loss = float("nan")
    if len(labels):
        xp = get_xp()
        loss, _ = cross_entropy_forward(xp.asarray(logits), xp.asarray(np.asarray(labels, np.int64)),
                                        check_finite=False)
    pred = logits.argmax(axis=1)
    return {"loss": loss, "acc": float((pred == labels).mean()) if len(labels) else float("nan"), "pred": pred}


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts; row = true class, column = predicted class."""
    labels, pred = np.asarray(labels, np.int64), np.asarray(pred, np.int64)
    if labels.shape != pred.shape or labels.ndim != 1:
        raise InputError(f"labels and pred must be 1-D of equal length, got {labels.shape} and {pred.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes or pred.min() < 0 or pred.max() >= num_classes):
        raise InputError(f"labels and pred must lie in [0, {num_classes})")
    return np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_matrix_loop(labels, pred, num_classes: int) -> np.ndarray:
    """The same counts, one sample at a time (the reference for the test)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    for t, p in zip(labels, pred):
        cm[int(t), int(p)] += 1
    return cm


@dataclass
class EvalResult:
    run_dir: Path
    n: int
    loss: float
    accuracy: float
    class_names: list
    per_class: dict           # class name -> accuracy (recall of that class)
    confusion: np.ndarray     # (classes, classes), row = true, column = predicted
    epoch: int
    config: dict
    tta: bool = False         # logits averaged over each image and its mirror image
    data_root: Path | None = None
    data_note: str = ""       # one line when the data location recorded by the run was used

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "n": self.n, "loss": self.loss, "accuracy": self.accuracy,
                "class_names": list(self.class_names), "per_class": dict(self.per_class),
                "confusion": self.confusion.tolist(), "epoch": self.epoch, "config": self.config, "tta": self.tta}


@dataclass
class LoadedRun:
    """A saved run, ready to use: its configs, weights on the current backend, and normalisation."""

    run_dir: Path
    config: TrainConfig
    model_config: ResNetConfig
    params: dict
    buffers: dict
    mean: np.ndarray         # (3,) float32, of the training set
    std: np.ndarray          # (3,) float32
    epoch: int
    data_meta: dict = None   # checkpoint.json's "data" (location, counts, fingerprints)
    data_root: Path | None = None   # set by load_test_split(..., run=...)
    data_note: str = ""


def load_run(run_dir) -> LoadedRun:
    """Load the checkpoint of ``run_dir``; every problem is one CheckpointError."""
    groups, meta = load_checkpoint(run_dir)
    run_dir = Path(run_dir)
    if run_dir.is_file():                   # the path of checkpoint.json itself
        run_dir = run_dir.parent
    try:
        cfg = TrainConfig.from_dict(meta.get("config"))
        mean = np.asarray(meta["data"]["mean"], np.float32)
        std = np.asarray(meta["data"]["std"], np.float32)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{run_dir}: corrupt checkpoint metadata ({type(exc).__name__}: {exc})") from None
    if mean.shape != (3,) or std.shape != (3,):
        raise CheckpointError(f"{run_dir}: corrupt checkpoint metadata (mean/std must have 3 values)")
    xp = get_xp()
    params = {k: xp.asarray(v) for k, v in groups.get("params", {}).items()}
    buffers = {k: xp.asarray(v) for k, v in groups.get("buffers", {}).items()}
    return LoadedRun(run_dir, cfg, cfg.model_config(), params, buffers, mean, std, int(meta.get("epoch", 0)),
                     dict(meta.get("data") or {}))


def load_test_split(data_dir, limit, num_classes, *, run: LoadedRun | None = None):
    """(images, labels, class names) of the test split, the first ``limit`` images if given.
    ``run``: the saved run the split is for; unless ``data_dir`` is given, the data location comes
    from the run (see :mod:`eca_ref.train.datasource`) and the test images must be the run's."""
    if limit is not None:
        check_int(limit, "limit", min_value=1)
    choice = choose_data_dir(run.run_dir, data_dir) if run is not None else None
    root = resolve_root(choice.root if choice is not None else data_dir)
    images, labels = load_cifar10(root, split="test")
    if choice is not None and not choice.explicit:
        n = run.config.limit
        check_test_split(run.run_dir, run.data_meta, images[:n], labels[:n], root, choice.note)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    try:
        names = list(class_names(root))
    except Exception:  # noqa: BLE001 - names are cosmetic; fall back to numbers
        names = [str(i) for i in range(num_classes)]
    if run is not None:
        run.data_root, run.data_note = root, choice.note
    return images, labels, names


def evaluate_run(run_dir, *, data_dir=None, limit: int | None = None, batch_size: int = EVAL_BATCH,
                 tta: bool = False, threads: int | None = None, workers: str | None = None,
                 engine: str | None = None, runner=None) -> EvalResult:
    """Load the checkpoint in ``run_dir`` and evaluate it on the test split (all of it, or the
    first ``limit`` images). The normalisation is the one the run was trained with. ``tta``:
    average the logits of each image and its mirror image (see :func:`eca_ref.train.predict`).
    ``threads``, ``workers``, ``engine`` (None: "fast") or an open block's ``runner``: what runs
    the model (see :func:`eca_ref.train.train`)."""
    check_int(batch_size, "batch_size", min_value=1)
    if not isinstance(tta, bool):
        raise InputTypeError(f"tta must be True or False, got {tta!r}")
    check_cores(threads, workers, engine, runner)
    run = load_run(run_dir)
    cfg, mcfg, params, buffers = run.config, run.model_config, run.params, run.buffers
    images, labels, names = load_test_split(data_dir, limit, mcfg.num_classes, run=run)
    run_dir = run.run_dir
    try:
        with use_runner(runner, threads, workers, engine) as run_model:
            ev = evaluate_arrays(params, buffers, mcfg, images, labels, run.mean, run.std, batch_size=batch_size,
                                 tta=tta, runner=run_model)
    except KeyError as exc:
        raise CheckpointError(f"{run_dir}: checkpoint lacks weight {exc} of the saved model config") from None
    cm = confusion_matrix(labels, ev["pred"], mcfg.num_classes)
    support = cm.sum(axis=1)
    per_class = {names[i]: (float(cm[i, i] / support[i]) if support[i] else float("nan")) for i in range(len(names))}
    return EvalResult(run_dir=run_dir, n=int(len(labels)), loss=ev["loss"], accuracy=ev["acc"], class_names=names,
                      per_class=per_class, confusion=cm, epoch=run.epoch, config=cfg.to_dict(), tta=tta,
                      data_root=run.data_root, data_note=run.data_note)
