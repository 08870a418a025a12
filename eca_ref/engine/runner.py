"""One object the trainer calls for a model pass, whichever engine runs it (see eca_ref.engine).

The fast engine cuts a batch into one shard per core (at least MIN_SHARD images each) and runs
the reference model's passes on every shard with the engine's layers (:mod:`eca_ref.engine.layers`):
in worker processes (:mod:`eca_ref.engine.processes`) or in threads (:mod:`eca_ref.engine.shards`).
Batch norm takes the statistics of the whole batch (synchronised over the shards), so the result is
the function of the whole batch, summed in another order; the shards' gradients are added in
shard order, so one core count always gives the same numbers.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import numpy

from eca_ref.backend import get_xp
from eca_ref.engine import blas
from eca_ref.engine.layers import FAST_LAYERS, fast_layers
from eca_ref.engine.processes import ProcessPool, allocator_tuned
from eca_ref.engine.shards import AllReduce, run_shards, split
from eca_ref.errors import InputError, InputTypeError
from eca_ref.models import ResNetCache, ResNetConfig, block_specs, resnet_backward, resnet_forward
from eca_ref.validation import check_float_array, check_int

__all__ = ["ENGINES", "WORKERS", "MIN_SHARD", "Runner", "ResNetTask", "ShardedCache", "cores"]

ENGINES = ("fast", "reference")
WORKERS = ("processes", "threads")
MIN_SHARD = 8   # images per shard at least: a smaller batch runs in one piece


class ResNetTask(NamedTuple):
    """The model's passes on one shard, as the worker processes run them (see engine.processes)."""

    cfg: ResNetConfig
    train: bool

    @property
    def reduce_capacity(self) -> int:
        return 2 * max(s.cout for s in block_specs(self.cfg)) + 1   # batch norm's longest vector: 2 C + 1

    def forward(self, inputs: dict, reduce):
        params = {k[2:]: a for k, a in inputs.items() if k.startswith("p:")}
        buffers = {k[2:]: a for k, a in inputs.items() if k.startswith("b:")}
        logits, cache, new_buffers = resnet_forward(inputs["x"], params, buffers, self.cfg, train=self.train,
                                                    layers=fast_layers(reduce))
        return {"logits": logits, **{"b:" + k: a for k, a in new_buffers.items()}}, cache

    def backward(self, inputs: dict, cache) -> dict:
        return resnet_backward(inputs["dlogits"], cache)


class ShardedCache(NamedTuple):
    cfg: ResNetConfig
    bounds: tuple     # (start, stop) rows of each shard
    caches: object    # threads: a ResNetCache per shard; processes: the pool's (pass id, shard 0's cache)
    reducer: object   # threads: the shards' AllReduce (the backward's batch norm uses it); processes: None
    train: bool


def _sum_in_order(parts: list) -> dict:
    """The shards' gradients added in shard order (0 + 1 + ...): deterministic."""
    grads = parts[0]
    for other in parts[1:]:
        for k, a in other.items():
            grads[k] += a
    return grads


class Runner:
    """forward/backward of the model on ``n`` cores.

    Attributes:
        engine: "fast" (the engine's layers, a batch cut into one shard per core) or "reference"
            (the plain reference code in this process).
        n: cores used (shards of a batch).
        workers: "processes" or "threads" (what runs the shards; "none" for the reference).
    """

    def __init__(self, engine: str, n: int, workers: str, pool: ProcessPool | None = None):
        self.engine, self.n, self.workers, self.pool = engine, n, workers, pool

    def __repr__(self) -> str:
        return f"Runner(engine={self.engine!r}, n={self.n}, workers={self.workers!r})"

    def forward(self, x, params, buffers, cfg, *, train: bool):
        """(logits, cache, new_buffers), as :func:`eca_ref.models.resnet_forward`."""
        if self.engine == "reference":
            return resnet_forward(x, params, buffers, cfg, train=train)
        if not isinstance(cfg, ResNetConfig):
            raise InputTypeError(f"cfg must be a ResNetConfig, got {type(cfg).__name__}")
        check_float_array(x, "x", ndim=4, dims="(N, 3, H, W)", check_finite=False)
        train = bool(train)
        n = min(self.n, x.shape[0] // MIN_SHARD)
        if n <= 1 or (self.pool is not None and n < self.pool.n):
            return resnet_forward(x, params, buffers, cfg, train=train, layers=FAST_LAYERS)   # one piece
        bounds = tuple(split(x.shape[0], n))
        xp = get_xp()
        if self.pool is not None:
            shared = {**{"p:" + k: a for k, a in params.items()}, **{"b:" + k: a for k, a in buffers.items()}}
            inputs = [{"x": x[a:b], **shared} for a, b in bounds]
            outputs, state = self.pool.forward(ResNetTask(cfg, train), inputs, reduce=train)
            logits = numpy.concatenate([o["logits"] for o in outputs], axis=0)
            new_buffers = {k: outputs[0]["b:" + k] for k in buffers}
            return logits, ShardedCache(cfg, bounds, state, None, train), new_buffers
        reducer = AllReduce(n)

        def shard(i, reduce):
            a, b = bounds[i]
            return resnet_forward(x[a:b], params, buffers, cfg, train=train, layers=fast_layers(reduce if train else None))

        results = run_shards(shard, n, reducer=reducer)
        logits = xp.concatenate([r[0] for r in results], axis=0)
        # the running statistics come from the whole batch's statistics: the same in every shard
        return logits, ShardedCache(cfg, bounds, tuple(r[1] for r in results), reducer, train), results[0][2]

    def backward(self, dlogits, cache) -> dict:
        """Parameter gradients, as :func:`eca_ref.models.resnet_backward`."""
        if isinstance(cache, ResNetCache):
            return resnet_backward(dlogits, cache)
        if not isinstance(cache, ShardedCache):
            raise InputTypeError(f"cache must be the cache this runner's forward returned, got {type(cache).__name__}")
        N = cache.bounds[-1][1]
        check_float_array(dlogits, "dlogits", shape=(N, cache.cfg.num_classes), dims="(N, num_classes)",
                          check_finite=False)
        if self.pool is not None and cache.reducer is None:
            inputs = [{"dlogits": dlogits[a:b]} for a, b in cache.bounds]
            return _sum_in_order(self.pool.backward(ResNetTask(cache.cfg, cache.train), inputs, cache.caches))
        if cache.reducer is None:
            raise InputError("cache comes from a forward pass in worker processes that this runner does not hold")

        def shard(i, reduce):  # the shard's batch-norm layers reduce through the forward's reducer
            a, b = cache.bounds[i]
            return resnet_backward(dlogits[a:b], cache.caches[i])

        return _sum_in_order(run_shards(shard, len(cache.caches), reducer=cache.reducer))


@contextmanager
def cores(threads: int | None = None, workers: str | None = None, *, engine: str = "fast"):
    """A :class:`Runner` for the block.

    engine "fast": the engine on ``threads`` cores (None: every available core), its shards run by
    worker processes (``workers`` "processes", the default: faster, see engine.processes) or threads
    of this process ("threads"); the results are the same. BLAS runs one thread per call inside the
    block (where its threads cannot be controlled, one core is used). engine "reference": the plain
    reference code, in this process. On the CuPy backend the engine's CPU tricks do not apply: the
    runner is the reference's (``runner.engine`` says so).
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if threads is not None:
        threads = check_int(threads, "threads", min_value=1)
        if threads > 256:
            raise InputError(f"threads must be at most 256, got {threads}")
    if workers is None:
        workers = "processes"
    if workers not in WORKERS:
        raise InputError(f"workers must be one of {', '.join(WORKERS)}, got {workers!r}")
    if engine == "reference" or get_xp() is not numpy:
        yield Runner("reference", 1, "none")
        return
    n = blas.available_cores() if threads is None else threads
    with blas.one_thread() as single:
        if not single:
            n = 1                      # BLAS keeps its own threads; ours would compete with them
        if workers == "threads" or n == 1:
            yield Runner("fast", n, "threads")
            return
        pool = ProcessPool(n, tune_malloc=allocator_tuned())
        try:
            yield Runner("fast", n, "processes", pool)
        finally:
            pool.close()
