"""What the attention learns: the gate σ(f(GAP(x))) of every block, per class, for a trained run.

The paper (appendix A2) plots the ECA weights of a few blocks averaged over the images of a few
classes: in early blocks the gates of different classes look alike; deeper blocks give different
classes different channel weights. This module measures the same thing on the test split::

    from eca_ref.train import gate_statistics
    g = gate_statistics("runs/eca_d8")
    g.blocks[0].class_spread            # mean over channels of the std across classes of the class-mean gate

For every block, ``class_mean`` (classes, C) is the gate averaged over the test images of each class.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np  # host-side statistics of gates already brought back with asnumpy

from eca_ref.backend import asnumpy
from eca_ref.data import iterate_batches
from eca_ref.errors import CheckpointError, InputError
from eca_ref.models import attention_gates, count_parameters
from eca_ref.train.evaluate import EVAL_BATCH, load_run, load_test_split
from eca_ref.validation import check_int


@dataclass
class BlockGates:
    name: str
    channels: int
    hp: dict                  # the attention's hyper-parameters in this block (e.g. k)
    class_mean: np.ndarray    # (classes, C): mean gate per class and channel
    mean: float               # mean gate over every image and channel
    class_spread: float       # mean over channels of the std across classes of class_mean
    top_channel: int          # the channel whose class-mean gate varies most across classes
    top_high: str             # the class that opens that channel most
    top_low: str              # the class that opens it least

    def to_dict(self) -> dict:
        return {"block": self.name, "channels": self.channels, "hp": self.hp, "mean": self.mean,
                "class_spread": self.class_spread, "top_channel": self.top_channel, "top_high": self.top_high,
                "top_low": self.top_low, "class_mean": self.class_mean.tolist()}


@dataclass
class GateStats:
    run_dir: Path
    attention: str
    n: int
    class_names: list
    blocks: list              # [BlockGates], in network order
    data_root: Path | None = None
    data_note: str = ""       # one line when the data location recorded by the run was used

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "attention": self.attention, "n": self.n,
                "class_names": list(self.class_names), "blocks": [b.to_dict() for b in self.blocks]}


def summarize_gates(gates_by_block: dict, labels: np.ndarray, class_names: list, hp_by_block: dict | None = None):
    """Per-class statistics from gates {block: (N, C)} and labels (N,): a list of BlockGates."""
    labels = np.asarray(labels)
    K = len(class_names)
    counts = np.bincount(labels, minlength=K).astype(np.float64)  # (K,)
    if (counts == 0).any():
        missing = [class_names[i] for i in np.flatnonzero(counts == 0)]
        raise InputError(f"every class needs at least one image for per-class gates; none of: {', '.join(missing)}")
    out = []
    for name, g in gates_by_block.items():
        g = np.asarray(g, np.float64)  # (N, C)
        one_hot = np.eye(K)[labels]  # (N, K)
        class_mean = (one_hot.T @ g) / counts[:, None]  # (K, C)
        spread = class_mean.std(axis=0)  # (C,): how differently the classes open each channel
        c = int(spread.argmax())
        out.append(BlockGates(name=name, channels=int(g.shape[1]), hp=dict((hp_by_block or {}).get(name, {})),
                              class_mean=class_mean, mean=float(g.mean()), class_spread=float(spread.mean()),
                              top_channel=c, top_high=class_names[int(class_mean[:, c].argmax())],
                              top_low=class_names[int(class_mean[:, c].argmin())]))
    return out


def gate_statistics(run_dir, *, data_dir=None, limit: int | None = None, batch_size: int = EVAL_BATCH) -> GateStats:
    """Gates of every block of the run's model on the test split, averaged per class (computed by
    the reference model, :func:`eca_ref.models.attention_gates`)."""
    check_int(batch_size, "batch_size", min_value=1)
    run = load_run(run_dir)
    mcfg = run.model_config
    if mcfg.attention == "none":
        raise InputError(f"{run.run_dir}: the run has no attention (attention = 'none'), so there are no gates")
    images, labels, names = load_test_split(data_dir, limit, mcfg.num_classes, run=run)
    collected: dict = {}
    for x, _ in iterate_batches(images, labels, batch_size, rng=None, shuffle=False, augment=False,
                                mean=run.mean, std=run.std):
        try:
            gates = attention_gates(x, run.params, run.buffers, mcfg)  # {block: (B, C)}
        except KeyError as exc:
            raise CheckpointError(f"{run.run_dir}: checkpoint lacks weight {exc} of the saved model config") from None
        for block, g in gates.items():
            collected.setdefault(block, []).append(asnumpy(g))
    gates_by_block = {b: np.concatenate(v, axis=0) for b, v in collected.items()}
    hp = {b: d["hp"] for b, d in count_parameters(mcfg)["per_block"].items()}
    blocks = summarize_gates(gates_by_block, labels, names, hp)
    return GateStats(run_dir=run.run_dir, attention=mcfg.attention, n=int(len(labels)), class_names=names,
                     blocks=blocks, data_root=run.data_root, data_note=run.data_note)
