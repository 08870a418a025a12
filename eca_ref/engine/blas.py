"""CPU cores and BLAS threads, for the engine.

A training step of the tiny ResNet is a few hundred NumPy calls on small arrays; a multithreaded
BLAS gains little on such products (on a 2-core machine the step got *slower* with a second
OpenBLAS thread). The engine runs one shard of each batch per core instead (eca_ref.engine.shards),
with BLAS set to one thread meanwhile (:func:`one_thread`).

BLAS threads are set through OpenBLAS's ``openblas_set_num_threads`` in the library NumPy loaded
(NumPy's wheels bundle it); where that cannot be found (another BLAS), :func:`one_thread` reports
so and the engine runs one shard only, unless BLAS already uses one thread ($OPENBLAS_NUM_THREADS=1
and the like), so that the two kinds of threads never compete for the cores.
"""
from __future__ import annotations

import ctypes
import glob
import os
from contextlib import contextmanager

import numpy

__all__ = ["available_cores", "blas_control", "one_thread", "single_threaded"]

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


_state = {"single": False}


def single_threaded() -> bool:
    """True inside :func:`one_thread` where BLAS runs one thread per call."""
    return _state["single"]


@contextmanager
def one_thread():
    """BLAS runs one thread per call inside the block (restored on exit). Yields True where that
    holds (OpenBLAS found, or the environment already asks for one thread), else False."""
    control = None if _blas_is_single_threaded_by_env() else blas_control()
    single = _blas_is_single_threaded_by_env() or control is not None
    previous_state, previous_blas = _state["single"], None
    if control is not None and not previous_state:
        previous_blas = control.get()
        control.set(1)
    _state["single"] = single or previous_state
    try:
        yield _state["single"]
    finally:
        _state["single"] = previous_state
        if previous_blas is not None:
            control.set(previous_blas)
