"""Learning-rate schedules, evaluated per optimizer step.

A schedule is a pure function of the step number, so resuming a run needs
nothing but the step counter (no scheduler state to save).

* ``onecycle`` -- PyTorch's ``OneCycleLR`` (``anneal_strategy="cos"``, two
  phases): from ``peak / div_factor`` up to ``peak`` over the first
  ``warmup * total_steps`` steps, then down to ``peak / div_factor /
  final_div_factor`` at the last step, both halves cosine-shaped::

      lr(t) = end + (start - end) / 2 * (1 + cos(pi * pct)),   pct = (t - t0) / (t1 - t0)

* ``cosine`` -- linear warmup from ``peak / warmup_steps`` to ``peak`` over
  ``warmup_steps = round(warmup * total_steps)`` steps, then cosine decay to 0.

Example::

    >>> s = Schedule("onecycle", peak=0.1, total_steps=100)
    >>> round(s(0), 6), round(max(s(t) for t in range(100)), 6), round(s(99), 9)
    (0.004, 0.1, 4e-07)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from eca_ref.errors import InputError

SCHEDULES = ("onecycle", "cosine")


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


@dataclass(frozen=True)
class Schedule:
    """The learning rate of each step ``0 .. total_steps - 1``; call it with the step number."""

    kind: str = "onecycle"
    peak: float = 0.1
    total_steps: int = 1
    warmup: float = 0.3                # fraction of the steps spent rising to the peak
    div_factor: float = 25.0           # onecycle: start lr = peak / div_factor
    final_div_factor: float = 1e4      # onecycle: last lr = start lr / final_div_factor

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if not (isinstance(self.peak, (int, float)) and math.isfinite(self.peak) and self.peak > 0):
            raise InputError(f"lr (the peak learning rate) must be a finite number > 0, got {self.peak!r}")
        if isinstance(self.total_steps, bool) or not isinstance(self.total_steps, int) or self.total_steps < 1:
            raise InputError(f"total_steps must be an integer >= 1, got {self.total_steps!r}")
        if not (isinstance(self.warmup, (int, float)) and 0.0 <= self.warmup < 1.0):
            raise InputError(f"warmup must be a fraction of the steps in [0, 1), got {self.warmup!r}")
        if self.div_factor <= 0 or self.final_div_factor <= 0:
            raise InputError("div_factor and final_div_factor must be > 0")

    def __call__(self, step: int) -> float:
        if not 0 <= step < self.total_steps:
            raise InputError(f"step must be in [0, {self.total_steps}), got {step}")
        if self.kind == "onecycle":
            return self._onecycle(step)
        return self._cosine(step)

    def _onecycle(self, step: int) -> float:
        initial = self.peak / self.div_factor
        final = initial / self.final_div_factor
        end_up = float(self.warmup * self.total_steps) - 1.0      # PyTorch's phase boundary
        end_down = float(self.total_steps - 1)
        if step <= end_up:
            return _cos(initial, self.peak, step / end_up if end_up > 0 else 1.0)
        # the second phase starts where the first ended (a float, as in PyTorch); span > 0 as warmup < 1
        return _cos(self.peak, final, (step - end_up) / (end_down - end_up))

    def _cosine(self, step: int) -> float:
        warm = int(round(self.warmup * self.total_steps))
        if step < warm:
            return self.peak * (step + 1) / warm
        span = self.total_steps - warm
        return self.peak * 0.5 * (1.0 + math.cos(math.pi * (step - warm) / span)) if span > 0 else self.peak

    def to_dict(self) -> dict:
        return asdict(self)
