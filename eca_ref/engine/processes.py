"""Data parallel over worker processes: the shards of a batch run in separate Python processes.

Why processes: the threads of one process share Python's interpreter lock, and a training step is
a few thousand NumPy calls, each of which hands that lock over between the threads. Measured on a
2-core machine: one 64-image shard of the default net's step took 116 ms alone, 140 ms as one of
two threads of a process, and 116-118 ms as one of two separate processes side by side.

A :class:`ProcessPool` of n shards starts n - 1 worker processes (the calling process runs shard 0
itself). The pool knows nothing of models: a pass is a *task*, a small picklable object with

    task.forward(inputs: dict, reduce) -> (outputs: dict, state)
    task.backward(inputs: dict, state) -> outputs: dict
    task.reduce_capacity: int      # the longest vector ``reduce`` is asked to sum

where inputs and outputs are flat dicts of arrays (images and parameters in, logits and gradients
out) and ``reduce`` sums a vector over the shards (batch norm's statistics), with the arithmetic of
:class:`eca_ref.engine.shards.AllReduce`, so processes and threads give the same numbers. A worker
keeps its shard's forward ``state`` for the backward pass. Arrays travel through memory-mapped
files (:mod:`eca_ref.engine.shm`). Workers use one BLAS thread, ignore Ctrl-C (the calling process
handles it), and end when the pool is closed or their parent dies.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import platform
import signal
import time

import numpy

from eca_ref.engine import blas
from eca_ref.engine.shm import (POLL_S, Attached, Broken, Reducer, Rendezvous, SharedFile, WorkerError,
                                main_module_hidden, remove_stale_files, spin_until_readable, view)
from eca_ref.errors import InputError
from eca_ref.validation import check_int

__all__ = ["ProcessPool", "WorkerError", "tune_allocator", "allocator_tuned"]

_STOP_TIMEOUT_S = 5.0
_tuned = {"on": False}


def allocator_tuned() -> bool:
    """True once :func:`tune_allocator` has succeeded in this process (worker processes follow it)."""
    return _tuned["on"]


def tune_allocator() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (a process-wide setting; opt-in).

    NumPy allocates every large temporary afresh; by default glibc returns those blocks to the
    system and the next allocation pays page faults to get them back. Raising the mmap and trim
    thresholds keeps blocks up to 32 MB in the heap (about 10% of a training step here). Returns
    False where glibc is not available (then nothing changes).
    """
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        ok &= libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
        ok &= libc.mallopt(m_top_pad, 64 * 1024 * 1024)
    except (OSError, AttributeError):
        return False
    _tuned["on"] = _tuned["on"] or bool(ok)
    return bool(ok)


def _layout(arrays: dict) -> tuple[list, int]:
    """[(key, dtype, shape, byte offset)] of a dict of arrays packed one after the other, and the total bytes."""
    entries, offset = [], 0
    for key, a in arrays.items():
        entries.append((key, a.dtype.str, tuple(a.shape), offset))
        offset += a.nbytes
    return entries, offset


def _pack(arrays: dict, shared: SharedFile) -> list:
    """Write the arrays into the shared file (grown when needed); return their layout."""
    entries, nbytes = _layout(arrays)
    buf = shared.ensure(nbytes)
    for key, dtype, shape, offset in entries:
        view(buf, dtype, shape, offset)[...] = arrays[key]
    return entries


def _unpack(buf, entries: list) -> dict:
    """Copies of the arrays a layout describes."""
    return {key: view(buf, dtype, shape, offset).copy() for key, dtype, shape, offset in entries}


# ------------------------------------------------------------------ the worker process

def _worker_main(conn, shard: int, n: int, rdv: Rendezvous, tune_malloc: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if tune_malloc:
        tune_allocator()
    control = blas.blas_control()
    if control is not None:
        control.set(1)
    parent = os.getppid()
    inbox, red = Attached(), Attached()
    outbox = SharedFile(f"w{shard}")
    state, state_id = None, None

    def parent_alive():
        return os.getppid() == parent

    try:
        while True:
            try:
                spin_until_readable(conn)
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "stop":
                return
            try:
                kind, pass_id, task, entries, path, red_path, cap = msg
                inputs = _unpack(inbox.get(path), entries)
                if kind == "forward":
                    reduce = None
                    if red_path is not None:
                        slots = view(red.get(red_path), numpy.float64, (2, n, cap))
                        reduce = Reducer(rdv, slots, shard, parent_alive)
                    state, state_id = None, None
                    outputs, state = task.forward(inputs, reduce)
                    state_id = pass_id
                elif kind == "backward":
                    if state is None or state_id != pass_id:
                        raise InputError("this shard's forward state is gone (a later forward pass replaced it): "
                                         "run the backward pass on the latest forward pass's cache")
                    outputs = task.backward(inputs, state)
                else:
                    raise InputError(f"unknown message {kind!r}")
                entries = _pack(outputs, outbox) if outputs else []
                conn.send(("ok", outbox.path if outputs else None, entries))
            except BaseException as exc:  # noqa: BLE001 (reported to the parent, which raises it)
                rdv.breakdown()
                if isinstance(exc, Broken):
                    conn.send(("broken",))
                else:
                    try:
                        conn.send(("error", exc))
                    except Exception:  # noqa: BLE001 (an exception that does not pickle)
                        conn.send(("error", WorkerError(f"{type(exc).__name__}: {exc}")))
    finally:
        outbox.close()


# ------------------------------------------------------------------ the parent's side

class ProcessPool:
    """n - 1 worker processes; with the calling process, n shards of each pass (see the module doc)."""

    def __init__(self, n: int, *, tune_malloc: bool = False):
        self.n = check_int(n, "processes", min_value=2)
        remove_stale_files()
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: safe beside this process's threads
        self.rdv = Rendezvous(ctx, self.n, blas.available_cores())
        self.conns, self.procs = [], []
        self.inboxes = [SharedFile(f"in{i}") for i in range(self.n)]
        self.red = SharedFile("red")
        self.outboxes = [Attached() for _ in range(self.n)]
        self.pass_id = 0
        self.closed = False
        self._pending = set()  # workers whose reply to the last message has not been read
        self._replies = {}
        saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        try:
            for k in saved:
                os.environ[k] = "1"  # a worker's BLAS runs one thread from the start
            for shard in range(1, self.n):
                parent_conn, child_conn = ctx.Pipe()
                p = ctx.Process(target=_worker_main, args=(child_conn, shard, self.n, self.rdv, bool(tune_malloc)),
                                name=f"eca-ref-shard{shard}", daemon=True)
                with main_module_hidden():
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

    def _alive(self) -> bool:
        return all(p.is_alive() for p in self.procs)

    def _check_usable(self):
        if self.closed:
            raise WorkerError("the worker processes have been stopped (their cores() block has ended)")
        if not self._alive():
            codes = [p.exitcode for p in self.procs]
            self.close()
            raise WorkerError(f"a worker process has died (exit codes {codes}); open a new cores() block")

    def _collect(self):
        """Every pending worker's reply to its last message; raises the first failure (after all have answered)."""
        errors = []
        for i in sorted(self._pending):
            conn, p = self.conns[i - 1], self.procs[i - 1]
            spin_until_readable(conn)
            while not conn.poll(POLL_S):
                if not p.is_alive():
                    code = p.exitcode
                    self.close()
                    raise WorkerError(f"worker process {i} died during a pass (exit code {code})")
            reply = conn.recv()
            self._pending.discard(i)
            if reply[0] == "ok":
                self._replies[i] = reply
            else:
                errors.append(reply[1] if reply[0] == "error" else None)
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

    def _run(self, kind: str, task, inputs: list, own, red_path=None, cap=0) -> list:
        """Send each worker its shard's inputs, run shard 0 here (``own()``), collect the outputs."""
        if len(inputs) != self.n:
            raise InputError(f"a pass of this pool takes {self.n} shards of inputs, got {len(inputs)}")
        self._check_usable()
        self._drain()
        self.rdv.reset()
        self._replies = {}
        for i in range(1, self.n):
            entries = _pack(inputs[i], self.inboxes[i])
            self.conns[i - 1].send((kind, self.pass_id, task, entries, self.inboxes[i].path, red_path, cap))
            self._pending.add(i)
        try:
            result = own()
        except Broken:  # a worker failed and broke the rendezvous: its error is the one to raise
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
        outputs = []
        for i in range(1, self.n):
            _, path, entries = self._replies[i]
            outputs.append(_unpack(self.outboxes[i].get(path), entries) if path else {})
        return [result] + outputs

    def forward(self, task, inputs: list, *, reduce: bool):
        """task.forward on every shard: (outputs per shard, shard 0's state). ``reduce``: give the
        shards a reduce function over each other (else None)."""
        self.pass_id += 1
        red_path, cap, reducer = None, 0, None
        if reduce:
            cap = check_int(task.reduce_capacity, "task.reduce_capacity", min_value=1)
            slots = view(self.red.ensure(2 * self.n * cap * 8), numpy.float64, (2, self.n, cap))
            red_path = self.red.path
            reducer = Reducer(self.rdv, slots, 0, self._alive)
        box = {}

        def own():
            out, box["state"] = task.forward(inputs[0], reducer)
            return out

        outputs = self._run("forward", task, inputs, own, red_path, cap)
        return outputs, (self.pass_id, box["state"])

    def backward(self, task, inputs: list, state) -> list:
        """task.backward on every shard, with the state each kept from :meth:`forward` (shard 0's is given)."""
        pass_id, state0 = state
        if pass_id != self.pass_id:
            raise InputError("cache is not the latest forward pass's: the worker processes keep only that one")
        return self._run("backward", task, inputs, lambda: task.backward(inputs[0], state0))

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
        for f in self.inboxes:
            f.close()
        self.red.close()
