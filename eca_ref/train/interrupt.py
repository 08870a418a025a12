"""Ctrl-C during training: the first one asks the loop to checkpoint and return; a second stops at once."""
from __future__ import annotations

import signal
import threading

__all__ = ["SigintFlag"]


class SigintFlag:
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
