"""The array backend: NumPy (default) or CuPy, chosen once, in one place.

Every module of eca_ref that does array math asks this module for the array
library with :func:`get_xp` instead of importing numpy itself, so switching the
whole package to another array library is one call::

    from eca_ref import backend
    backend.set_backend("cupy")     # or the environment variable ECA_REF_BACKEND=cupy
    xp = backend.get_xp()           # the cupy module from now on

Results that a user sees (printed tables, JSON, checkpoints) go through
:func:`asnumpy`, which is the identity for NumPy arrays.
"""
from __future__ import annotations

import os
from types import ModuleType

import numpy

from eca_ref.errors import BackendError

BACKENDS = ("numpy", "cupy")
_state: dict[str, object] = {"name": None, "xp": None}


def _load(name: str) -> ModuleType:
    if name == "numpy":
        return numpy
    if name == "cupy":
        try:
            import cupy  # noqa: PLC0415 (optional dependency)
        except ImportError as exc:
            raise BackendError(
                "backend 'cupy' requested but CuPy is not installed: "
                "pip install 'eca-ref[cupy]' (needs an NVIDIA GPU and CUDA 12)"
            ) from exc
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver missing or broken
            raise BackendError(
                f"backend 'cupy' requested but no usable GPU was found ({type(exc).__name__}: {exc})"
            ) from exc
        if n < 1:
            raise BackendError("backend 'cupy' requested but no usable GPU was found (0 CUDA devices)")
        return cupy
    raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")


def set_backend(name: str) -> ModuleType:
    """Select the array library for the whole package; returns its module.

    Raises BackendError (a ValueError) for an unknown name, a missing CuPy or
    a machine without a usable GPU. Nothing falls back silently.
    """
    if not isinstance(name, str):
        raise BackendError(f"backend must be a string, one of {', '.join(BACKENDS)}; got {type(name).__name__}")
    name = name.strip().lower()
    xp = _load(name)
    _state["name"], _state["xp"] = name, xp
    return xp


def get_xp() -> ModuleType:
    """The array module in use (numpy or cupy). The first call honours $ECA_REF_BACKEND."""
    xp = _state["xp"]
    if xp is None:
        xp = set_backend(os.environ.get("ECA_REF_BACKEND", "numpy") or "numpy")
    return xp  # type: ignore[return-value]


def special() -> ModuleType:
    """scipy.special for NumPy, cupyx.scipy.special for CuPy (both have expit)."""
    if get_xp() is numpy:
        import scipy.special as sp  # noqa: PLC0415
    else:
        import cupyx.scipy.special as sp  # noqa: PLC0415
    return sp


def synchronize() -> None:
    """Wait until the device has finished its queued work: a no-op for NumPy.

    CuPy launches kernels asynchronously, so a timing without this measures
    only the launch. The benchmark calls it before reading the clock.
    """
    xp = get_xp()
    if xp is not numpy:
        xp.cuda.Device().synchronize()


def backend_name() -> str:
    """'numpy' or 'cupy'."""
    get_xp()
    return _state["name"]  # type: ignore[return-value]


def asnumpy(a):
    """A NumPy array (host memory) from an array of either backend; other values pass through."""
    if isinstance(a, numpy.ndarray) or numpy.isscalar(a):
        return a
    get = getattr(a, "get", None)  # cupy.ndarray.get() copies to the host
    if callable(get) and type(a).__module__.startswith("cupy"):
        return get()
    return a


def asarray(a, dtype=None):
    """An array of the current backend (copied to the device under CuPy)."""
    return get_xp().asarray(a, dtype=dtype)


def is_array(a) -> bool:
    """True for a NumPy array or an array of the current backend."""
    return isinstance(a, numpy.ndarray) or isinstance(a, get_xp().ndarray)
