"""Ablation: the same network, recipe and budget with each attention variant, over several seeds::

    from eca_ref.train import ablate
    r = ablate(["none", "se", "eca"], seeds=[0, 1], epochs=10, out="runs/ablate")
    [(row.variant, row.params_added, row.mean, row.std) for row in r.rows]

Each (variant, seed) trains into ``out/<variant>-seed<seed>``. A run already there
with the same configuration is reused (finished) or resumed (unfinished), so an
interrupted ablation continues where it stopped; a run there with a different
configuration is refused.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from eca_ref.errors import InputError
from eca_ref.models import count_parameters
from eca_ref.train.checkpoint import has_checkpoint
from eca_ref.train.config import TrainConfig
from eca_ref.train.loop import resume, train
from eca_ref.train.result import TrainResult
from eca_ref.train.runner import check_cores, use_runner


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
                "statuses": list(self.statuses), "seconds": self.seconds}


@dataclass
class AblationResult:
    rows: list = field(default_factory=list)
    epochs: int = 0
    config: dict = field(default_factory=dict)
    out: Path | None = None

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "config": self.config, "out": str(self.out),
                "rows": [r.to_dict() for r in self.rows]}


def ablate(variants, seeds, *, epochs: int, out, data_dir=None, reporter_factory=None, threads: int | None = None,
           workers: str | None = None, engine: str | None = None, runner=None, **config) -> AblationResult:
    """Train every variant with every seed under the same recipe; returns an :class:`AblationResult`.

    Args:
        variants: attention names of the registry (e.g. ``["none", "se", "eca"]``).
        seeds: integer seeds; each variant gets the same seeds (same data order and augmentation).
        epochs: the budget, equal for every variant.
        out: folder that receives one run directory per (variant, seed).
        data_dir: CIFAR-10 location.
        reporter_factory: optional ``f(variant, seed) -> reporter`` (see :func:`train`).
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
    bad = {"attention", "seed", "epochs"} & set(config)
    if bad:
        raise InputError(f"ablate sets {sorted(bad)} itself")
    check_cores(threads, workers, engine, runner)
    cfgs = {(v, s): TrainConfig(attention=v, seed=s, epochs=epochs, **config) for v in variants for s in seeds}
    out = Path(out)
    result = AblationResult(epochs=epochs, out=out,
                            config={k: v for k, v in cfgs[(variants[0], seeds[0])].to_dict().items()
                                    if k not in ("attention", "seed")})
    with use_runner(runner, threads, workers, engine) as run_model:
        for v in variants:
            _ablate_variant(result, v, seeds, cfgs, out, data_dir, reporter_factory, run_model)
    return result


def _ablate_variant(result: AblationResult, v: str, seeds: list, cfgs: dict, out: Path, data_dir, reporter_factory,
                    runner) -> None:
    """Train (or reuse, or resume) the runs of variant ``v``, one per seed; appends its row to ``result``."""
    counts = count_parameters(cfgs[(v, seeds[0])].model_config())
    row = AblationRow(variant=v, params_total=int(counts["total"]), params_added=int(counts["attention"]),
                      accs=[], seeds=seeds, statuses=[], seconds=0.0)
    for s in seeds:
        cfg = cfgs[(v, s)]
        run_dir = out / f"{v}-seed{s}"
        reporter = reporter_factory(v, s) if reporter_factory else None
        if has_checkpoint(run_dir):
            r: TrainResult = resume(run_dir, data_dir=data_dir, reporter=reporter, expect=cfg.to_dict(),
                                    runner=runner)
        else:
            r = train(cfg, run_dir, data_dir=data_dir, reporter=reporter, runner=runner)
        if r.status == "interrupted":
            raise AblationInterrupted(f"{r.message}; run the same ablation again to continue")
        row.statuses.append(r.status)
        row.accs.append(r.test_acc if r.status == "finished" and r.test_acc is not None else float("nan"))
        row.seconds += sum(m["seconds"] for m in r.metrics)
    result.rows.append(row)
