"""Data parallel over worker processes: the shards of a batch run in separate Python processes.

Why processes: the threads of one process share Python's interpreter lock, and a training step is
a few thousand NumPy calls, each of which hands that lock over between the threads. Measured on
the 2-core machine of docs/results.md: one 64-image shard of the default net's step took 116 ms
alone, 140 ms as one of two threads of a process, and 116-118 ms as one of two separate processes
side by side: the threads' extra time is the lock, not the memory.

:func:`processes` starts n - 1 worker processes (the calling process runs shard 0 itself); inside
the block, :func:`eca_ref.models.resnet.resnet_forward` and ``resnet_backward`` cut a batch into n
shards and run one per process, exactly as the threads of :func:`eca_ref.parallel.threads` do:
batch norm sums its statistics over the shards (synchronised batch norm, here through shared
memory and a rendezvous of the processes), and the shards' gradients are added in shard order. The
arithmetic is the threads' own, so the results are the same, bit for bit.

::

    from eca_ref import procshards
    with procshards.processes(2):
        logits, cache, buffers = resnet_forward(x, params, buffers, cfg, train=True)
        grads = resnet_backward(dlogits, cache)

What travels: the shard's images, the parameters and running statistics (a few hundred KB) go to
a worker through a shared-memory file each pass; the logits and the gradients come back the same
way. A worker keeps its shard's forward cache for the backward pass. Workers use one BLAS thread,
ignore Ctrl-C (the calling process handles it), and end when the block ends or their parent dies.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import NamedTuple

import numpy

from eca_ref.errors import InputError
from eca_ref.validation import check_int

__all__ = ["processes", "use_cores", "active_pool", "ShardProcesses", "WorkerError", "WORKERS"]

WORKERS = ("processes", "threads")  # what runs the shards of a batch (see use_cores)

_POLL_S = 0.2        # how often a waiting process checks that its peers are alive
_STOP_TIMEOUT_S = 5.0


class WorkerError(RuntimeError):
    """A worker process failed (its error is in the message) or died."""


class _Broken(Exception):
    """The rendezvous was broken: another shard failed."""


def _shm_dir() -> str:
    """Where the shared files live: /dev/shm (memory) where there is one, else the temp directory."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def _remove_stale_files() -> None:
    """Remove the shared files of eca-ref processes that are gone (killed before they could).
    POSIX only: elsewhere os.kill(pid, 0) is not a harmless probe."""
    if os.name != "posix":
        return
    folder = _shm_dir()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) < 4 or parts[:2] != ["eca", "ref"] or not parts[2].isdigit():
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
        except OSError:  # alive, someone else's
            pass


class _SharedFile:
    """A file mapped into memory by the parent and a worker; replaced by a larger one when needed."""

    def __init__(self, tag: str):
        self.tag = tag
        self.path = None
        self.map = None

    def ensure(self, nbytes: int):
        if self.map is None or self.map.size < nbytes:
            self.close()
            size = max(1 << 16, 1 << (int(nbytes) - 1).bit_length())
            fd, path = tempfile.mkstemp(prefix=f"eca-ref-{os.getpid()}-{self.tag}-", dir=_shm_dir())
            os.ftruncate(fd, size)
            os.close(fd)
            self.path = path
            self.map = numpy.memmap(path, dtype=numpy.uint8, mode="r+", shape=(size,))
        return self.map

    def close(self):
        self.map = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


class _Attached:
    """The worker's side: maps a shared file by path, re-mapping when the parent replaced it."""

    def __init__(self):
        self.path = None
        self.map = None

    def get(self, path: str):
        if path != self.path:
            self.map = numpy.memmap(path, dtype=numpy.uint8, mode="r+")
            self.path = path
        return self.map


def _view(buf, dtype, shape, offset=0):
    """An array of dtype and shape at byte offset of a mapped uint8 buffer."""
    dtype = numpy.dtype(dtype)
    count = int(numpy.prod(shape, dtype=numpy.int64))
    return numpy.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)


class _Rendezvous:
    """A barrier of n processes that a failing process can break (waiting peers then raise _Broken)
    and whose waits notice a dead peer. The last process to arrive releases the others.

    A waiting process first watches a shared counter for up to SPIN_S seconds before it sleeps on
    its semaphore: waking a sleeping process took 66 us a barrier on the 2-core machine, and a
    training step of the default net passes 18 of them (one per batch norm and pass; the shards
    arrive within a few milliseconds of each other). Measured there, 5 ms of spinning gave steps
    about 1.5 ms shorter than 1 ms. With more processes than cores nobody spins (a spinning process
    would take the core of the one it waits for)."""

    SPIN_S = 0.005

    def __init__(self, ctx, n: int, cores: int):
        self.n = n
        self.spin_s = self.SPIN_S if n <= cores else 0.0
        self.count = ctx.Value("q", 0)                       # arrivals so far (with its lock)
        self.generation = ctx.Value("q", 0, lock=False)      # completed barriers (read while spinning)
        self.broken = ctx.Value("b", 0, lock=False)
        self.sems = [ctx.Semaphore(0) for _ in range(n)]

    def wait(self, shard: int, peers_alive) -> None:
        with self.count.get_lock():
            if self.broken.value:
                raise _Broken()
            self.count.value += 1
            last = self.count.value == self.n
            generation = self.generation.value
            if last:
                self.count.value = 0
                for i, sem in enumerate(self.sems):
                    if i != shard:
                        sem.release()
                self.generation.value = generation + 1
        if last:
            return
        deadline = time.perf_counter() + self.spin_s
        shared = self.generation
        while shared.value == generation and not self.broken.value and time.perf_counter() < deadline:
            pass
        while not self.sems[shard].acquire(timeout=_POLL_S):  # released already when the spin saw it
            if self.broken.value or not peers_alive():
                raise _Broken()
        if self.broken.value:
            raise _Broken()

    def breakdown(self) -> None:
        self.broken.value = 1
        for sem in self.sems:
            sem.release()

    def reset(self) -> None:
        """Between passes (nobody waits): unbroken, no arrivals, no pending releases."""
        with self.count.get_lock():
            self.count.value = 0
            self.broken.value = 0
        for sem in self.sems:
            while sem.acquire(block=False):
                pass


class _Reducer:
    """Sums float64 vectors over the shards through shared slots: the arithmetic of
    :class:`eca_ref.parallel.AllReduce` (shard order 0 + 1 + ..., two alternating slot sets)."""

    def __init__(self, rdv: _Rendezvous, slots, shard: int, peers_alive):
        self.rdv, self.slots, self.shard, self.peers_alive = rdv, slots, shard, peers_alive
        self.calls = 0

    def _put(self, a):
        """Write a into this shard's slot of the call's set and wait for every shard's."""
        a = numpy.asarray(a, dtype=numpy.float64)
        if a.ndim != 1 or a.size > self.slots.shape[2]:
            raise InputError(f"a reduction takes a vector of at most {self.slots.shape[2]} values, got shape {a.shape}")
        self.slots[self.calls % 2, self.shard, :a.size] = a
        self.calls += 1
        self.rdv.wait(self.shard, self.peers_alive)
        return a

    def __call__(self, a):
        a = self._put(a)
        slots = self.slots[(self.calls - 1) % 2]
        total = slots[0, :a.size].copy()
        for other in slots[1:]:
            total += other[:a.size]
        return total

    def gather(self, a):
        """Every shard's vector a, stacked in shard order: (n, len(a))."""
        a = self._put(a)
        return self.slots[(self.calls - 1) % 2, :, :a.size].copy()


def _layout(cfg, dtype, n_images, image_shape):
    """Byte offsets of a forward message: images, then every parameter, then every buffer."""
    from eca_ref.models import resnet  # noqa: PLC0415 (resnet imports this module)

    itemsize = numpy.dtype(dtype).itemsize
    entries, offset = [], 0
    shape = (n_images,) + tuple(image_shape)
    entries.append(("x", shape, offset))
    offset += int(numpy.prod(shape)) * itemsize
    for group, shapes in (("p", resnet.param_shapes(cfg)), ("b", resnet.buffer_shapes(cfg))):
        for name, s in shapes.items():
            entries.append((f"{group}:{name}", s, offset))
            offset += int(numpy.prod(s)) * itemsize
    return entries, offset


def _reduce_capacity(cfg) -> int:
    """The longest vector batch norm reduces: 2 C + 1 for the widest layer."""
    from eca_ref.models import resnet  # noqa: PLC0415

    return 2 * max(s.cout for s in resnet.block_specs(cfg)) + 1


def _spin_until_readable(conn, seconds: float = 0.001) -> None:
    """Poll the pipe without sleeping for up to ``seconds`` (a message usually comes within that time;
    a sleeping process takes tens of microseconds to wake), then return either way."""
    deadline = time.perf_counter() + seconds
    while not conn.poll() and time.perf_counter() < deadline:
        pass


# ------------------------------------------------------------------ the worker process

def _worker_main(conn, shard: int, n: int, rdv: _Rendezvous, tune_malloc: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from eca_ref import parallel  # noqa: PLC0415
    from eca_ref.models import resnet  # noqa: PLC0415

    if tune_malloc:
        from eca_ref.bench import tune_allocator  # noqa: PLC0415
        tune_allocator()
    blas = parallel.blas_control()
    if blas is not None:
        blas.set(1)
    parent = os.getppid()
    files = {"in": _Attached(), "out": _Attached(), "red": _Attached()}
    cache, cache_id = None, None

    def parent_alive():
        return os.getppid() == parent

    while True:
        try:
            _spin_until_readable(conn)
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        try:
            if msg[0] == "forward":
                _, pass_id, cfg, train, dtype, n_images, image_shape, paths, cap = msg
                buf = files["in"].get(paths["in"])
                entries, _ = _layout(cfg, dtype, n_images, image_shape)
                arrays = {k: _view(buf, dtype, s, off).copy() for k, s, off in entries}
                x = arrays.pop("x")
                params = {k[2:]: a for k, a in arrays.items() if k.startswith("p:")}
                buffers = {k[2:]: a for k, a in arrays.items() if k.startswith("b:")}
                reduce = None
                if train:
                    slots = _view(files["red"].get(paths["red"]), numpy.float64, (2, n, cap))
                    reduce = _Reducer(rdv, slots, shard, parent_alive)
                cache, cache_id = None, None
                logits, cache, _ = resnet._forward(x, params, buffers, cfg, train, None, reduce)
                cache_id = pass_id
                out = files["out"].get(paths["out"])
                _view(out, dtype, logits.shape)[...] = logits
                conn.send(("ok",))
            elif msg[0] == "backward":
                _, pass_id, dtype, dshape, paths = msg
                if cache is None or cache_id != pass_id:
                    raise InputError("this shard's forward cache is gone (a later forward pass replaced it): "
                                     "run resnet_backward on the cache of the latest resnet_forward")
                dlogits = _view(files["in"].get(paths["in"]), dtype, dshape).copy()
                grads = resnet._backward(dlogits, cache)
                out = files["out"].get(paths["out"])
                offset = 0
                for a in grads.values():
                    _view(out, dtype, a.shape, offset)[...] = a
                    offset += a.nbytes
                conn.send(("ok",))
            else:
                raise InputError(f"unknown message {msg[0]!r}")
        except BaseException as exc:  # noqa: BLE001 (reported to the parent, which raises it)
            rdv.breakdown()
            if isinstance(exc, _Broken):
                conn.send(("broken",))
            else:
                try:
                    conn.send(("error", exc))
                except Exception:  # noqa: BLE001 (an exception that does not pickle)
                    conn.send(("error", WorkerError(f"{type(exc).__name__}: {exc}")))


# ------------------------------------------------------------------ the parent's side

@contextmanager
def _main_module_hidden():
    """A spawned worker would first re-run the caller's main script (multiprocessing's "spawn" does,
    to find functions defined there); a script without an ``if __name__ == "__main__":`` guard
    would then start workers itself. The workers need nothing from it, so while they start, the
    main module shows multiprocessing neither its file nor its module name."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        for k in saved:
            if k == "__file__":
                del main.__dict__[k]
            else:
                main.__dict__[k] = None
        yield
    finally:
        if saved:
            main.__dict__.update(saved)


def _serially(fn, *args):
    """fn(*args) with every layer serial, as in a worker (whatever block encloses the caller)."""
    from eca_ref import parallel  # noqa: PLC0415

    with parallel.serial():
        return fn(*args)


class ProcCache(NamedTuple):
    cfg: object
    bounds: tuple      # (start, stop) rows of each shard
    cache0: object     # shard 0's ResNetCache (this process)
    pool: object       # the ShardProcesses whose workers hold the other shards' caches
    pass_id: int
    dtype: object


class ShardProcesses:
    """n - 1 worker processes; with the calling process, n shards of each batch (see the module doc)."""

    def __init__(self, n: int, *, tune_malloc: bool = False):
        self.n = check_int(n, "processes", min_value=2)
        _remove_stale_files()
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: safe beside this process's threads
        from eca_ref import parallel  # noqa: PLC0415

        self.rdv = _Rendezvous(ctx, self.n, parallel.available_cores())
        self.conns, self.procs = [], []
        self.files = [{"in": _SharedFile(f"in{i}"), "out": _SharedFile(f"out{i}")} for i in range(self.n)]
        self.red = _SharedFile("red")
        self.pass_id = 0
        self.closed = False
        self._pending = set()  # workers whose reply to the last message has not been read
        saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        try:
            for k in saved:
                os.environ[k] = "1"  # a worker's BLAS runs one thread from the start
            for shard in range(1, self.n):
                parent_conn, child_conn = ctx.Pipe()
                p = ctx.Process(target=_worker_main, args=(child_conn, shard, self.n, self.rdv, bool(tune_malloc)),
                                name=f"eca-ref-shard{shard}", daemon=True)
                with _main_module_hidden():
                    p.start()
                child_conn.close()
                self.conns.append(parent_conn)
                self.procs.append(p)
        except BaseException:
            self.close()
            raise
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- helpers

    def _alive(self) -> bool:
        return all(p.is_alive() for p in self.procs)

    def _check_usable(self):
        if self.closed:
            raise WorkerError("the worker processes have been stopped (the processes() block has ended)")
        if not self._alive():
            codes = [p.exitcode for p in self.procs]
            self.close()
            raise WorkerError(f"a worker process has died (exit codes {codes}); start a new processes() block")

    def _collect(self):
        """Every pending worker's reply to its last message; raises the first failure (after all
        have answered)."""
        errors = []
        for i in sorted(self._pending):
            conn, p = self.conns[i - 1], self.procs[i - 1]
            _spin_until_readable(conn)
            while not conn.poll(_POLL_S):
                if not p.is_alive():
                    codes = p.exitcode
                    self.close()
                    raise WorkerError(f"worker process {i} died during a pass (exit code {codes})")
            reply = conn.recv()
            self._pending.discard(i)
            if reply[0] == "error":
                errors.append(reply[1])
            elif reply[0] == "broken":
                errors.append(None)
        real = [e for e in errors if e is not None]
        if real:
            raise real[0]
        if errors:
            raise WorkerError("a pass was interrupted in another shard")

    def _drain(self):
        """Replies left over from a pass that was interrupted here (Ctrl-C): stop it, read them."""
        if self._pending:
            self.rdv.breakdown()
            try:
                self._collect()
            except Exception:  # noqa: BLE001 (the interrupted pass's errors are of no interest now)
                pass
            self._check_usable()  # unless a worker died meanwhile

    def _run(self, own, send):
        """Send every worker its message, run shard 0 here, collect the replies."""
        self._check_usable()
        self._drain()
        self.rdv.reset()
        for i in range(1, self.n):
            send(i)
            self._pending.add(i)
        try:
            result = own()
        except _Broken:  # a worker failed and broke the rendezvous: its error is the one to raise
            self._collect()
            raise WorkerError("a pass was interrupted in another shard") from None
        except BaseException:
            self.rdv.breakdown()
            try:
                self._collect()
            except Exception:  # noqa: BLE001 (this shard's own error wins)
                pass
            raise
        self._collect()
        return result

    # -- the model's passes

    def forward(self, x, params, buffers, cfg, train: bool):
        from eca_ref import parallel  # noqa: PLC0415
        from eca_ref.models import resnet  # noqa: PLC0415

        self._check_usable()
        N = x.shape[0]
        bounds = tuple(parallel.split(N, self.n))
        dtype = x.dtype
        self.pass_id += 1
        pass_id = self.pass_id
        cap = _reduce_capacity(cfg)
        red = self.red.ensure(2 * self.n * cap * 8)
        slots = _view(red, numpy.float64, (2, self.n, cap))
        paths = [None] * self.n
        for i in range(1, self.n):
            a, b = bounds[i]
            entries, nbytes = _layout(cfg, dtype, b - a, x.shape[1:])
            buf = self.files[i]["in"].ensure(nbytes)
            for key, shape, off in entries:
                src = x[a:b] if key == "x" else (params[key[2:]] if key[0] == "p" else buffers[key[2:]])
                _view(buf, dtype, shape, off)[...] = src
            self.files[i]["out"].ensure((b - a) * cfg.num_classes * dtype.itemsize)
            paths[i] = {"in": self.files[i]["in"].path, "out": self.files[i]["out"].path, "red": self.red.path}

        def send(i):
            a, b = bounds[i]
            self.conns[i - 1].send(("forward", pass_id, cfg, bool(train), dtype.str, b - a, tuple(x.shape[1:]),
                                    paths[i], cap))

        reduce = _Reducer(self.rdv, slots, 0, self._alive) if train else None
        a0, b0 = bounds[0]
        logits0, cache0, new_buffers = self._run(
            lambda: _serially(resnet._forward, x[a0:b0], params, buffers, cfg, train, None, reduce), send)
        parts = [logits0]
        for i in range(1, self.n):
            a, b = bounds[i]
            parts.append(_view(self.files[i]["out"].map, dtype, (b - a, cfg.num_classes)).copy())
        logits = numpy.concatenate(parts, axis=0)
        return logits, ProcCache(cfg, bounds, cache0, self, pass_id, dtype), new_buffers

    def backward(self, dlogits, cache: ProcCache) -> dict:
        from eca_ref.models import resnet  # noqa: PLC0415

        self._check_usable()
        if cache.pool is not self:
            raise InputError("cache comes from another processes() block")
        if cache.pass_id != self.pass_id:
            raise InputError("cache is not the latest forward pass's: the worker processes keep only that one")
        dtype = cache.dtype
        shapes = resnet.param_shapes(cache.cfg)
        nbytes = sum(int(numpy.prod(s)) for s in shapes.values()) * dtype.itemsize
        paths = [None]
        for i in range(1, self.n):
            a, b = cache.bounds[i]
            buf = self.files[i]["in"].ensure(dlogits[a:b].nbytes)
            _view(buf, dtype, dlogits[a:b].shape)[...] = dlogits[a:b]
            self.files[i]["out"].ensure(nbytes)
            paths.append({"in": self.files[i]["in"].path, "out": self.files[i]["out"].path})

        def send(i):
            a, b = cache.bounds[i]
            self.conns[i - 1].send(("backward", cache.pass_id, dtype.str, (b - a, cache.cfg.num_classes), paths[i]))

        a0, b0 = cache.bounds[0]
        grads = self._run(lambda: _serially(resnet._backward, dlogits[a0:b0], cache.cache0), send)
        for i in range(1, self.n):  # each shard's share, added in shard order (as the threads do)
            out, offset = self.files[i]["out"].map, 0
            for k, s in shapes.items():
                grads[k] += _view(out, dtype, s, offset)
                offset += int(numpy.prod(s)) * dtype.itemsize
        return grads

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.rdv.breakdown()  # a worker still in a pass stops waiting for this process
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(1.0)
        for conn in self.conns:
            conn.close()
        for files in self.files:
            for f in files.values():
                f.close()
        self.red.close()


_active = threading.local()


def active_pool():
    """The ShardProcesses of the innermost :func:`processes` block of this thread, or None."""
    return getattr(_active, "pool", None)


@contextmanager
def _pool_in_effect(pool):
    """The model's passes use ``pool`` (None: no worker processes) inside the block."""
    outer = active_pool()
    _active.pool = pool
    try:
        yield
    finally:
        _active.pool = outer


@contextmanager
def processes(n: int | None = None, *, tune_malloc: bool | None = None):
    """Run the model's shards in n processes inside the block (this one and n - 1 workers).

    n = None: every available core, or, inside another ``processes`` block, that block's workers
    (they are reused, not started again; likewise for an n equal to theirs). n = 1 (or the CuPy
    backend): no workers, the passes run in this process with one BLAS thread, as
    ``eca_ref.parallel.threads(1)``. ``tune_malloc``: the workers call
    :func:`eca_ref.bench.tune_allocator` (None: when this process has). Yields n. The workers
    this block started stop when it ends.
    """
    from eca_ref import parallel  # noqa: PLC0415
    from eca_ref.backend import get_xp  # noqa: PLC0415

    outer = active_pool()
    if n is None:
        n = outer.n if outer is not None else parallel.available_cores()
    n = check_int(n, "processes", min_value=1)
    if n > 256:
        raise InputError(f"processes must be at most 256, got {n}")
    if get_xp() is not numpy:
        n = 1
    with parallel.threads(1):  # this process: serial layers, one BLAS thread
        if n == 1:
            with _pool_in_effect(None):
                yield 1
            return
        if outer is not None and outer.n == n and not outer.closed:
            yield n
            return
        if tune_malloc is None:
            from eca_ref.bench import allocator_tuned  # noqa: PLC0415
            tune_malloc = allocator_tuned()
        pool = ShardProcesses(n, tune_malloc=tune_malloc)
        try:
            with _pool_in_effect(pool):
                yield n
        finally:
            pool.close()


@contextmanager
def use_cores(n: int | None = None, workers: str | None = None):
    """The model's shards on n cores (None: every available core, or the enclosing block's count),
    run by worker processes (:func:`processes`, fastest, see the module doc) or by threads of this
    process (:func:`eca_ref.parallel.threads`). The results are the same. ``workers`` None: the
    kind of the enclosing block, else processes. Yields n."""
    from eca_ref import parallel  # noqa: PLC0415

    if workers is None:
        workers = "threads" if active_pool() is None and parallel.num_threads() > 1 else "processes"
    if workers not in WORKERS:
        raise InputError(f"workers must be one of {', '.join(WORKERS)}, got {workers!r}")
    if n is not None:
        n = check_int(n, "threads", min_value=1)
    if workers == "processes":
        with processes(n) as k:
            yield k
        return
    with _pool_in_effect(None), parallel.threads(n) as k:  # threads, even inside a processes block
        yield k
