"""Ablation: the same network, recipe and budget with each attention variant, over several seeds::

    from eca_ref.train import ablate
    r = ablate(["none", "se", "eca"], seeds=[0, 1], epochs=10, out="runs/ablate")
    [(row.variant, row.params_added, row.mean, row.std) for row in r.rows]

Each (variant, seed) trains into ``out/<variant>-seed<seed>``. With ``ks`` (the kernel-size sweep,
the paper's Figure 4), every variant with a kernel (ECA, CECA, ...) trains once per k as well, into
``out/<variant>-k<k>-seed<seed>`` (``"adaptive"``: Eq. 12 per block, ``out/<variant>-seed<seed>``);
a variant without a kernel trains once, as without ``ks``::

    r = ablate(["eca"], seeds=[0, 1, 2], ks=[1, 3, 5, 7, 9, "adaptive"], epochs=4, out="runs/ksweep")

A run already there
with the same configuration is reused (finished) or resumed (unfinished), so an
interrupted ablation continues where it stopped; a run there with a different
configuration is refused.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from eca_ref.attention import VARIANTS, get_variant
from eca_ref.errors import InputError
from eca_ref.models import count_parameters
from eca_ref.train.checkpoint import has_checkpoint
from eca_ref.train.config import TrainConfig
from eca_ref.train.loop import resume, train
from eca_ref.train.result import TrainResult
from eca_ref.train.runner import check_cores, use_runner
from eca_ref.validation import check_int


class AblationInterrupted(Exception):
    """Ctrl-C during an ablation: the current run wrote its checkpoint; calling again continues."""


@dataclass
class AblationRow:
    variant: str
    params_total: int
    params_added: int            # parameters of the attention modules (the variant's cost)
    accs: list                   # test accuracy per seed (NaN for a run that diverged)
    seeds: list
    statuses: list
    seconds: float
    k: int | str | None = None   # the swept kernel size: an int, "adaptive" (Eq. 12 per block); None: not swept
    kernels: list = field(default_factory=list)   # the kernel size of each stage's blocks, in order (ECA-like)

    @property
    def label(self) -> str:
        return self.variant if self.k is None else f"{self.variant} k={self.k}"

    @property
    def mean(self) -> float:
        ok = [a for a in self.accs if math.isfinite(a)]
        return statistics.fmean(ok) if ok else float("nan")

    @property
    def std(self) -> float:
        """Sample standard deviation over the seeds (0 for a single seed)."""
        ok = [a for a in self.accs if math.isfinite(a)]
        return statistics.stdev(ok) if len(ok) >= 2 else 0.0

    def to_dict(self) -> dict:
        return {"variant": self.variant, "params_total": self.params_total, "params_added": self.params_added,
                "seeds": list(self.seeds), "test_acc": list(self.accs), "mean": self.mean, "std": self.std,
                "statuses": list(self.statuses), "seconds": self.seconds, "k": self.k,
                "kernels": list(self.kernels)}


@dataclass
class AblationResult:
    rows: list = field(default_factory=list)
    epochs: int = 0
    config: dict = field(default_factory=dict)
    out: Path | None = None

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "config": self.config, "out": str(self.out),
                "rows": [r.to_dict() for r in self.rows]}


def ablate(variants, seeds, *, epochs: int, out, ks=None, test_every: int = 1, data_dir=None, reporter_factory=None,
           threads: int | None = None, workers: str | None = None, engine: str | None = None, runner=None,
           **config) -> AblationResult:
    """Train every variant with every seed under the same recipe; returns an :class:`AblationResult`.

    Args:
        variants: attention names of the registry (e.g. ``["none", "se", "eca"]``).
        seeds: integer seeds; each variant gets the same seeds (same data order and augmentation).
        epochs: the budget, equal for every variant.
        out: folder that receives one run directory per (variant, seed), or (variant, k, seed).
        ks: None, or the kernel sizes to sweep (odd ints, ``"adaptive"`` for Eq. 12 per block); the
            variants with a kernel train once per k, the others (e.g. ``"none"``) once.
        test_every: evaluate after every ``test_every``-th epoch and after the last (see :func:`train`).
        data_dir: CIFAR-10 location.
        reporter_factory: optional ``f(label, seed) -> reporter`` (see :func:`train`); label is the
            variant's name, with `` k=K`` when ks is given.
        threads, workers, engine, runner: what runs the model (see :func:`train`); one
            ``eca_ref.engine.cores`` block (or the ``runner`` given) serves every run.
        **config: further :class:`TrainConfig` fields (depth, width, limit, lr, batch_size, ...).
    """
    variants, seeds = list(variants), list(seeds)
    if not variants:
        raise InputError("attention must name at least one variant")
    if not seeds:
        raise InputError("seeds must hold at least one seed")
    if len(set(variants)) != len(variants) or len(set(seeds)) != len(seeds):
        raise InputError("attention variants and seeds must not repeat")
    bad = {"attention", "seed", "epochs"} & set(config) | ({"k"} & set(config) if ks is not None else set())
    if bad:
        raise InputError(f"ablate sets {sorted(bad)} itself")
    check_int(test_every, "test_every", min_value=1)
    plan = _plan(variants, ks)
    check_cores(threads, workers, engine, runner)
    cfgs = {(v, k, s): TrainConfig(attention=v, seed=s, epochs=epochs, k=None if k in (None, ADAPTIVE) else k,
                                   **config)
            for v, k in plan for s in seeds}
    out = Path(out)
    result = AblationResult(epochs=epochs, out=out,
                            config={k: v for k, v in cfgs[(*plan[0], seeds[0])].to_dict().items()
                                    if k not in ("attention", "seed", "k")})
    with use_runner(runner, threads, workers, engine) as run_model:
        for v, k in plan:
            _ablate_variant(result, v, k, seeds, cfgs, out, data_dir, reporter_factory, run_model, test_every)
    return result


ADAPTIVE = "adaptive"


def _plan(variants: list, ks) -> list:
    """The rows to train, in order: (variant, k) with k None (no sweep), an odd int or ADAPTIVE."""
    if ks is None:
        return [(v, None) for v in variants]
    ks = list(ks)
    if not ks:
        raise InputError("k must hold at least one kernel size")
    if len(set(ks)) != len(ks):
        raise InputError("kernel sizes must not repeat")
    for k in ks:
        if k != ADAPTIVE:
            check_int(k, "k", min_value=1)
    swept = [v for v in variants if "k" in get_variant(v).hp_defaults]
    if variants and not swept:
        with_k = ", ".join(name for name, var in VARIANTS.items() if "k" in var.hp_defaults)
        raise InputError(f"k applies only to the variants with a kernel ({with_k}), got {', '.join(variants)}")
    return [(v, k) for v in variants for k in (ks if v in swept else [None])]


def _kernels(counts: dict) -> list:
    """The kernel size of each block, in order (empty for a variant without a kernel)."""
    return [int(b["hp"]["k"]) for b in counts["per_block"].values() if "k" in b.get("hp", {})]


def _ablate_variant(result: AblationResult, v: str, k, seeds: list, cfgs: dict, out: Path, data_dir,
                    reporter_factory, runner, test_every: int) -> None:
    """Train (or reuse, or resume) the runs of variant ``v`` (kernel ``k``), one per seed; appends its row."""
    counts = count_parameters(cfgs[(v, k, seeds[0])].model_config())
    row = AblationRow(variant=v, params_total=int(counts["total"]), params_added=int(counts["attention"]),
                      accs=[], seeds=seeds, statuses=[], seconds=0.0, k=k, kernels=_kernels(counts))
    for s in seeds:
        cfg = cfgs[(v, k, s)]
        run_dir = out / (f"{v}-seed{s}" if k in (None, ADAPTIVE) else f"{v}-k{k}-seed{s}")
        reporter = reporter_factory(row.label, s) if reporter_factory else None
        if has_checkpoint(run_dir):
            r: TrainResult = resume(run_dir, data_dir=data_dir, reporter=reporter, expect=cfg.to_dict(),
                                    runner=runner, test_every=test_every)
        else:
            r = train(cfg, run_dir, data_dir=data_dir, reporter=reporter, runner=runner, test_every=test_every)
        if r.status == "interrupted":
            raise AblationInterrupted(f"{r.message}; run the same ablation again to continue")
        row.statuses.append(r.status)
        row.accs.append(r.test_acc if r.status == "finished" and r.test_acc is not None else float("nan"))
        row.seconds += sum(m["seconds"] for m in r.metrics)
    result.rows.append(row)
