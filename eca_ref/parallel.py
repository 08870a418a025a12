"""Work split over CPU threads (opt-in; off by default).

A training step of the tiny ResNet is a few hundred array operations on small arrays: matrix
products with 16-64 rows and element-wise passes over a few MB. A multithreaded BLAS gains
little on such products (on a 2-core machine the step got *slower* with a second OpenBLAS
thread), and NumPy's element-wise operations run on one core. So eca-ref splits the work
itself, in two ways, inside :func:`threads`. NumPy releases the GIL inside its operations, so
the Python threads run at the same time; BLAS is set to one thread meanwhile.

1. **Shards of a batch (data parallel; what the model does).** ``resnet_forward`` cuts a batch
   into one shard per thread (:func:`shard_count`, :func:`run_shards`); each thread runs the whole
   network on its shard, every layer serially. Batch-norm layers sum their statistics over the
   shards through an :class:`AllReduce` (synchronised batch norm: the statistics of the whole
   batch, as without shards), and the backward pass sums the shards' parameter gradients. One
   hand-over per pass instead of a few hundred: a default training step took 158-166 ms this
   way against 171-187 ms with the layers split (2 cores, docs/results.md).
   :mod:`eca_ref.procshards` runs the same shards in worker processes instead, with the same
   results: faster, since threads hand Python's interpreter lock over at every NumPy call (the
   commands' default; ``--workers threads`` uses this module).
2. **Inside one layer.** Called on their own (not in a shard), the convolution hands its chunks
   of im2col columns, and batch-norm, ReLU, the residual additions and the attention module hand
   ranges of channels, to the threads (:func:`run`, :func:`split`, :func:`over_channels`).

Results differ from the serial ones by float rounding only: a convolution's weight gradient sums
its chunks in another order, and with shards every sum over the batch is added in another order
(the tests compare threaded and serial results in float64). For one thread count the results are
deterministic: sums over threads and shards are always added in the same order.

::

    from eca_ref import parallel
    with parallel.threads(2):          # what `eca-ref train` and `eca-ref bench` do by default
        logits, cache, buffers = resnet_forward(x, params, buffers, cfg, train=True)

Outside ``threads(n)`` (and with the CuPy backend, whose GPU kernels are parallel already)
everything runs serially in the calling thread, and NumPy's BLAS keeps its own setting.

BLAS threads are set through OpenBLAS's ``openblas_set_num_threads`` in the library NumPy
loaded (NumPy's wheels bundle it); where that cannot be found (another BLAS), ``threads(n)``
stays serial unless BLAS already uses one thread ($OPENBLAS_NUM_THREADS=1 and the like), so
that the two kinds of threads never compete for the cores.
"""
from __future__ import annotations

import contextvars
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numpy

from eca_ref.errors import InputError
from eca_ref.validation import check_int

__all__ = ["threads", "num_threads", "available_cores", "split", "run", "over_channels", "serial", "blas_control",
           "blas_single_threaded", "AllReduce", "run_shards", "shard_count"]

# Element-wise jobs smaller than this per thread run in one piece. Measured on the 2-core machine of
# docs/results.md: the ECA module on a (128, 64, 8, 8) float32 map (524,288 values) took 0.40 ms in
# one thread and 0.57 ms split over two (each pass too short for the hand-over to pay).
MIN_WORK = 1 << 19

_state = {"n": 1, "active": 0, "blas_single": False, "pool": None, "pool_size": 0}
_lock = threading.Lock()
_local = threading.local()  # .in_shard: this thread runs one shard of a data-parallel pass (its layers stay serial)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class _OpenBLAS:
    """openblas_{get,set}_num_threads of the OpenBLAS that NumPy loaded, through ctypes."""

    PREFIXES = ("scipy_openblas", "openblas")
    SUFFIXES = ("64_", "")

    def __init__(self, lib, getter, setter):
        self._get, self._set = getattr(lib, getter), getattr(lib, setter)
        self._get.restype = ctypes.c_int
        self._get.argtypes = []
        self._set.restype = None
        self._set.argtypes = [ctypes.c_int]

    def get(self) -> int:
        return int(self._get())

    def set(self, n: int) -> None:
        self._set(int(n))

    @classmethod
    def find(cls):
        here = os.path.dirname(numpy.__file__)
        candidates = []
        for folder in (os.path.join(here, "..", "numpy.libs"), os.path.join(here, ".dylibs"), here):
            for pattern in ("*openblas*.so*", "*openblas*.dylib", "*openblas*.dll"):
                candidates += sorted(glob.glob(os.path.join(folder, pattern)))
        candidates.append(None)  # symbols already loaded into the process (a system OpenBLAS)
        for path in candidates:
            try:
                lib = ctypes.CDLL(path) if path else ctypes.CDLL(None)
            except (OSError, TypeError):  # TypeError: CDLL(None) where the platform has no such handle
                continue
            for prefix in cls.PREFIXES:
                for suffix in cls.SUFFIXES:
                    getter, setter = f"{prefix}_get_num_threads{suffix}", f"{prefix}_set_num_threads{suffix}"
                    if hasattr(lib, getter) and hasattr(lib, setter):
                        return cls(lib, getter, setter)
        return None


_blas = {"searched": False, "control": None}


def blas_control():
    """The OpenBLAS thread control of NumPy's BLAS, or None where it cannot be found."""
    if not _blas["searched"]:
        _blas["control"], _blas["searched"] = _OpenBLAS.find(), True
    return _blas["control"]


def _blas_is_single_threaded_by_env() -> bool:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value) == 1
    return False


def num_threads() -> int:
    """The threads the layers split their work over now (1 outside :func:`threads`)."""
    return _state["n"]


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None or _state["pool_size"] < n:
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=True)
            _state["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="eca-ref")
            _state["pool_size"] = n
        return _state["pool"]


@contextmanager
def threads(n: int | None = None):
    """Split the layers' work over n threads inside the block; BLAS runs one thread per call.

    n = None: every available core, or, inside another ``threads`` block, the count in effect
    there (so a caller can set the count for everything its callees do). n = 1 runs serially
    with a one-thread BLAS: eca-ref uses exactly one core. BLAS's setting is restored on exit.
    With the CuPy backend, or where NumPy's BLAS threads cannot be controlled (and are not 1
    already), the block runs serially and BLAS keeps its own setting. Yields the thread count
    in effect.
    """
    from eca_ref.backend import get_xp  # noqa: PLC0415 (backend imports nothing from here)

    if n is None:
        n = _state["n"] if _state["active"] else available_cores()
    n = check_int(n, "threads", min_value=1)
    if n > 256:
        raise InputError(f"threads must be at most 256, got {n}")
    blas, previous_blas, single = None, None, False
    if get_xp() is not numpy:
        n = 1                                   # GPU kernels are parallel already; BLAS is cuBLAS
    else:
        single = _blas_is_single_threaded_by_env()
        if not single:
            blas = blas_control()
            single = blas is not None
        if not single:
            n = 1                               # BLAS keeps its own threads; ours would compete with them
    previous = (_state["n"], _state["blas_single"])
    if n > 1:
        _pool(n)
    if blas is not None and not _state["blas_single"]:  # an enclosing block has set it already
        previous_blas = blas.get()
        blas.set(1)
    _state["n"], _state["blas_single"] = n, single or _state["blas_single"]
    _state["active"] += 1
    try:
        yield n
    finally:
        _state["n"], _state["blas_single"] = previous
        _state["active"] -= 1
        if previous_blas is not None:
            blas.set(previous_blas)


def blas_single_threaded() -> bool:
    """True inside :func:`threads` where BLAS runs one thread per call (the usual case)."""
    return _state["blas_single"]


def split(total: int, parts: int | None = None, *, work: int | None = None) -> list[tuple[int, int]]:
    """[0, total) as at most ``parts`` near-equal ranges (a, b), none empty (one empty range for
    total 0). Default parts: num_threads(), or 1 inside a shard or a worker thread (the parts would
    run serially there; in one piece, a layer sums in the same order in a shard of any thread
    count, or in a worker process).

    ``work``: the elements the whole job touches; each range then gets at least MIN_WORK of them
    (a small job runs in one piece: handing it to a thread costs more than it saves).
    """
    if parts is None:  # inside a shard or a worker the parts would run one after the other: one piece
        parts = 1 if _inside_parallel_work() else num_threads()
    if work is not None:
        parts = min(parts, max(1, work // MIN_WORK))
    parts = max(1, min(parts, total))
    step, extra = divmod(total, parts)
    out, a = [], 0
    for i in range(parts):
        b = a + step + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


def over_channels(fn, a) -> list:
    """[fn(c0, c1)] over ranges of the channels (axis 1) of the (N, C, ...) array a, split over the
    threads; a map under MIN_WORK values per thread is one range. For a channel-major array each
    range is one contiguous block of memory."""
    return run(fn, split(a.shape[1], work=a.size))


@contextmanager
def serial():
    """Inside the block this thread's layers run serially, as inside a shard (the model's passes
    over a batch too small to shard use it, so that they add their sums in a shard's order)."""
    previous = getattr(_local, "in_shard", False)
    _local.in_shard = True
    try:
        yield
    finally:
        _local.in_shard = previous


def _inside_parallel_work() -> bool:
    """True in a shard or a pool worker: what runs there stays serial (no nested hand-overs)."""
    return getattr(_local, "in_shard", False) or threading.current_thread().name.startswith("eca-ref")


def run(fn, items) -> list:
    """[fn(*item) for item in items], the items spread over the threads; results in order.

    The calling thread does the first item itself; the others run in copies of the caller's
    context (so ``numpy.errstate`` applies to them too). Exceptions propagate (the first item's,
    else the first in order).
    """
    items = list(items)
    if len(items) <= 1 or _state["n"] <= 1 or _inside_parallel_work():
        return [fn(*item) for item in items]
    pool = _state["pool"]
    # each item runs in a copy of the caller's context: numpy.errstate (a context variable) holds there too
    futures = [pool.submit(contextvars.copy_context().run, fn, *item) for item in items[1:]]
    try:
        first = fn(*items[0])
    finally:
        wait(futures)  # every item has ended before anything (a result or an exception) goes back
    return [first] + [f.result() for f in futures]


# ------------------------------------------------------------------ data parallel: shards of a batch

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


def shard_count(batch: int, min_per_shard: int) -> int:
    """Into how many shards a data-parallel pass should cut a batch: num_threads(), at most one per
    ``min_per_shard`` samples, and 1 inside a shard or a worker thread (no nested pools)."""
    if _inside_parallel_work():
        return 1
    return max(1, min(_state["n"], batch // max(1, min_per_shard)))


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
    if _state["pool"] is None or _state["pool_size"] < n - 1:
        _pool(n)

    def shard(i):
        previous = getattr(_local, "in_shard", False)
        _local.in_shard = True
        try:
            return fn(i, reducer.for_shard(i))
        except BaseException:
            reducer.abort()
            raise
        finally:
            _local.in_shard = previous

    pool = _state["pool"]
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
