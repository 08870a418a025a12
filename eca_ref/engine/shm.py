"""What the engine's worker processes share with the parent: memory-mapped files, a barrier, a reducer.

Used by :mod:`eca_ref.engine.processes`. Arrays travel through files in /dev/shm (memory) mapped by
both sides; batch norm's sums over the shards go through shared slots with the arithmetic of
:class:`eca_ref.engine.shards.AllReduce` (shard order 0 + 1 + ..., so the same numbers as threads).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import contextmanager

import numpy

from eca_ref.errors import InputError

__all__ = ["WorkerError", "Broken", "SharedFile", "Attached", "view", "Rendezvous", "Reducer", "POLL_S",
           "spin_until_readable", "main_module_hidden", "remove_stale_files"]

POLL_S = 0.2        # how often a waiting process checks that its peers are alive
_STOP_TIMEOUT_S = 5.0


class WorkerError(RuntimeError):
    """A worker process failed (its error is in the message) or died."""


class Broken(Exception):
    """The rendezvous was broken: another shard failed."""


def shm_dir() -> str:
    """Where the shared files live: /dev/shm (memory) where there is one, else the temp directory."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def remove_stale_files() -> None:
    """Remove the shared files of eca-ref processes that are gone (killed before they could).
    POSIX only: elsewhere os.kill(pid, 0) is not a harmless probe."""
    if os.name != "posix":
        return
    folder = shm_dir()
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


class SharedFile:
    """A file mapped into memory by the parent and a worker; replaced by a larger one when needed."""

    def __init__(self, tag: str):
        self.tag = tag
        self.path = None
        self.map = None

    def ensure(self, nbytes: int):
        if self.map is None or self.map.size < nbytes:
            self.close()
            size = max(1 << 16, 1 << (int(nbytes) - 1).bit_length())
            fd, path = tempfile.mkstemp(prefix=f"eca-ref-{os.getpid()}-{self.tag}-", dir=shm_dir())
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


class Attached:
    """The worker's side: maps a shared file by path, re-mapping when the parent replaced it."""

    def __init__(self):
        self.path = None
        self.map = None

    def get(self, path: str):
        if path != self.path:
            self.map = numpy.memmap(path, dtype=numpy.uint8, mode="r+")
            self.path = path
        return self.map


def view(buf, dtype, shape, offset=0):
    """An array of dtype and shape at byte offset of a mapped uint8 buffer."""
    dtype = numpy.dtype(dtype)
    count = int(numpy.prod(shape, dtype=numpy.int64))
    return numpy.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)


class Rendezvous:
    """A barrier of n processes that a failing process can break (waiting peers then raise Broken)
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
                raise Broken()
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
        while not self.sems[shard].acquire(timeout=POLL_S):  # released already when the spin saw it
            if self.broken.value or not peers_alive():
                raise Broken()
        if self.broken.value:
            raise Broken()

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


class Reducer:
    """Sums float64 vectors over the shards through shared slots: the arithmetic of
    :class:`eca_ref.engine.shards.AllReduce` (shard order 0 + 1 + ..., two alternating slot sets)."""

    def __init__(self, rdv: Rendezvous, slots, shard: int, peers_alive):
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


def spin_until_readable(conn, seconds: float = 0.001) -> None:
    """Poll the pipe without sleeping for up to ``seconds`` (a message usually comes within that time;
    a sleeping process takes tens of microseconds to wake), then return either way."""
    deadline = time.perf_counter() + seconds
    while not conn.poll() and time.perf_counter() < deadline:
        pass


@contextmanager
def main_module_hidden():
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
