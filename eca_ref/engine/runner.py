"""One object the trainer calls for a model pass, whichever engine runs it (see eca_ref.engine)."""
from __future__ import annotations

from contextlib import contextmanager

from eca_ref.errors import InputError
from eca_ref.models import resnet_backward, resnet_forward
from eca_ref.procshards import WORKERS, active_pool, use_cores
from eca_ref.validation import check_int

__all__ = ["ENGINES", "WORKERS", "Runner", "cores"]

ENGINES = ("fast", "reference")


class Runner:
    """forward/backward of the model on ``n`` cores.

    Attributes:
        engine: "fast" (the engine's layers, a batch cut into one shard per core) or "reference"
            (the plain reference code in this process, one core).
        n: cores used.
        workers: "processes" or "threads" (what runs the shards; "none" for the reference).
    """

    def __init__(self, engine: str, n: int, workers: str):
        self.engine, self.n, self.workers = engine, n, workers

    def forward(self, x, params, buffers, cfg, *, train: bool):
        """(logits, cache, new_buffers), as :func:`eca_ref.models.resnet_forward`."""
        return resnet_forward(x, params, buffers, cfg, train=train)

    def backward(self, dlogits, cache) -> dict:
        """Parameter gradients, as :func:`eca_ref.models.resnet_backward`."""
        return resnet_backward(dlogits, cache)


@contextmanager
def cores(threads: int | None = None, workers: str | None = None, *, engine: str = "fast"):
    """A :class:`Runner` for the block: the fast engine on ``threads`` cores (None: every available
    core) with its shards in worker processes or threads, or the reference code (one core)."""
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if threads is not None:
        check_int(threads, "threads", min_value=1)
    if workers is not None and workers not in WORKERS:
        raise InputError(f"workers must be one of {', '.join(WORKERS)}, got {workers!r}")
    if engine == "reference":
        with use_cores(1, "threads"):
            yield Runner("reference", 1, "none")
        return
    with use_cores(threads, workers) as n:
        yield Runner("fast", n, "processes" if active_pool() is not None else "threads")
