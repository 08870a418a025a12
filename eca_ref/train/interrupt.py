"""Ctrl-C (SIGINT) and SIGTERM during training: the first one asks the loop to finish the current
step, checkpoint and return; a second one stops at once.

Schedulers and containers (Slurm, Kubernetes, ``docker stop``, systemd) stop a job with SIGTERM and
kill it a grace period later, so SIGTERM gets the treatment of Ctrl-C: ``eca-ref train`` then exits
with status 143 (128 + 15) instead of 130 (128 + 2).
"""
from __future__ import annotations

import signal
import threading

__all__ = ["SIGNALS", "SigintFlag", "StopFlag", "StopNow"]

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class StopNow(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: stop at once. ``signum`` is the signal received."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class StopFlag:
    """While active, the first SIGINT or SIGTERM only sets ``.flag`` and ``.signum`` (the loop then
    checkpoints and returns); a second one raises :class:`StopNow` (a KeyboardInterrupt) at once.
    Outside the main thread this is a no-op."""

    def __init__(self):
        self.flag = False
        self.signum = None
        self._prev = {}

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def _handle(self, signum, frame):
        if self.flag:
            raise StopNow(signum)
        self.flag = True
        self.signum = int(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._prev[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, prev in self._prev.items():
            signal.signal(s, prev if prev is not None else signal.SIG_DFL)
        self._prev = {}
        return False


SigintFlag = StopFlag          # the former name
