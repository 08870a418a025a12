"""Data parallel over threads: the shards of a batch run at the same time in threads of this process.

A batch is cut into one shard per core (:func:`split`); each thread runs the whole network on its
shard, every layer serially, with BLAS set to one thread (:mod:`eca_ref.engine.blas`). NumPy
releases Python's interpreter lock inside its operations, so the threads run at the same time.
Batch-norm layers sum their statistics over the shards through an :class:`AllReduce`
(synchronised batch norm: the statistics of the whole batch, as without shards), and the backward
pass sums the shards' parameter gradients. :mod:`eca_ref.engine.processes` runs the same shards in
worker processes, with the same arithmetic and so the same numbers.

Results differ from one piece by float rounding only: every sum over the batch is added in
another order. For one shard count they are deterministic: sums over the shards are always added
in shard order.
"""
from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy

from eca_ref.errors import InputError
from eca_ref.validation import check_int

__all__ = ["AllReduce", "run_shards", "split"]

_pools: dict = {}
_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A pool of at least ``workers`` threads, started once and reused."""
    with _lock:
        pool = _pools.get("pool")
        if pool is None or pool._max_workers < workers:
            if pool is not None:
                pool.shutdown(wait=True)
            pool = _pools["pool"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eca-ref")
        return pool


def split(total: int, parts: int) -> list[tuple[int, int]]:
    """[0, total) as ``parts`` near-equal ranges (a, b), the longer ones first; none empty."""
    parts = max(1, min(parts, total))
    step, extra = divmod(total, parts)
    out, a = [], 0
    for i in range(parts):
        b = a + step + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


class AllReduce:
    """Sums arrays over the n shards of a data-parallel pass (each shard one thread of this process).

    Every shard calls ``reduce(shard, a)`` with its partial sums, in the same sequence of calls; each
    call returns the sum over the shards, added in shard order (0 + 1 + ...), so every shard gets
    the same, deterministic result. Batch-norm layers use it for the batch statistics of the whole
    batch (what PyTorch calls synchronised batch norm).

    Two sets of slots alternate from call to call: a shard can write call k + 2's values only after
    every shard has passed call k + 1's barrier, that is, has finished reading call k's.
    """

    def __init__(self, n: int):
        self.n = check_int(n, "n", min_value=1)
        self._barrier = threading.Barrier(self.n)
        self._slots = [[None] * self.n, [None] * self.n]
        self._calls = [0] * self.n

    def __call__(self, shard: int, a):
        if self.n == 1:
            return a
        slots = self._slots[self._calls[shard] % 2]
        self._calls[shard] += 1
        slots[shard] = a
        self._barrier.wait()  # raises threading.BrokenBarrierError after abort()
        total = slots[0].copy()
        for other in slots[1:]:
            total += other
        return total

    def gather(self, shard: int, a):
        """Every shard's ``a`` (1-D, the same length in every shard), stacked in shard order: (n, len(a))."""
        if self.n == 1:
            return a[None].copy()
        slots = self._slots[self._calls[shard] % 2]
        self._calls[shard] += 1
        slots[shard] = a
        self._barrier.wait()
        return numpy.stack(slots)

    def for_shard(self, shard: int):
        """One shard's reduce function: ``reduce(a)`` is the sum over the shards, ``reduce.gather(a)``
        every shard's a."""
        return _ShardReduce(self, shard)

    def abort(self) -> None:
        """Wake every shard waiting in a call (they raise BrokenBarrierError): one shard has failed."""
        self._barrier.abort()


class _ShardReduce:
    """AllReduce.for_shard's result: a -> sum over the shards; .gather(a) -> every shard's a."""

    def __init__(self, reducer: AllReduce, shard: int):
        self.reducer, self.shard = reducer, shard

    def __call__(self, a):
        return self.reducer(self.shard, a)

    def gather(self, a):
        return self.reducer.gather(self.shard, a)


def run_shards(fn, n: int, *, reducer: AllReduce | None = None) -> list:
    """[fn(0, reduce_0), ..., fn(n - 1, reduce_{n-1})], every shard on its own thread at the same time.

    ``reduce_i`` is shard i's :class:`AllReduce` function. The layers inside a shard run serially
    (the shards are the parallel work). A shard that raises aborts the others' reductions, so
    none waits forever; the first shard's own error (not the BrokenBarrierError it caused) propagates.
    n = 1 runs fn(0, identity) in the calling thread. ``reducer``: an AllReduce of n shards to use
    (one that an earlier pass made, e.g. a forward pass whose caches the backward pass reduces with).
    """
    if reducer is None:
        reducer = AllReduce(n)
    elif reducer.n != n:
        raise InputError(f"reducer must be an AllReduce of {n} shards, got one of {reducer.n}")
    if n == 1:
        return [fn(0, reducer.for_shard(0))]

    def shard(i):
        try:
            return fn(i, reducer.for_shard(i))
        except BaseException:
            reducer.abort()
            raise

    pool = _pool(n - 1)
    futures = [pool.submit(contextvars.copy_context().run, shard, i) for i in range(1, n)]
    errors, results = [], []
    try:
        results.append(shard(0))
    except BaseException as exc:  # noqa: BLE001 (re-raised below, after every shard has ended)
        errors.append(exc)
    finally:
        wait(futures)
    for f in futures:
        exc = f.exception()
        if exc is not None:
            errors.append(exc)
        else:
            results.append(f.result())
    if errors:
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or errors)[0]
    return results
