"""What :func:`eca_ref.train.train` and :func:`eca_ref.train.resume` return."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eca_ref.train.config import TrainConfig

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """What :func:`train` and :func:`resume` return.

    status: "finished" (all planned epochs done), "stopped" (``stop_after`` reached),
    "interrupted" (Ctrl-C or SIGTERM, named by ``signal``; a checkpoint was written) or "diverged" (a NaN/inf loss;
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
    signal: str | None = None       # "SIGINT" or "SIGTERM" for an interrupted run

    @property
    def test_acc(self) -> float | None:
        return self.metrics[-1]["test_acc"] if self.metrics else None
