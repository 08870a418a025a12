"""Input checks shared by every public function.

Each check raises one clear :class:`~eca_ref.errors.InputError` or
:class:`~eca_ref.errors.InputTypeError` that names the argument and what was
expected. Checks that cost a pass over the data (NaN/inf) follow SciPy's
``check_finite`` convention: on at the public API, off in training hot paths.
"""
from __future__ import annotations

import numbers

import numpy

from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError


def check_float_array(a, name: str, *, ndim: int | None = None, shape=None, check_finite: bool = True,
                      dims: str | None = None):
    """Check that ``a`` is a float32/float64 array of the expected rank/shape.

    ``shape`` may hold None for "any size" in a position; ``dims`` names the axes
    for the message, e.g. "(N, C, H, W)".
    """
    xp = get_xp()
    if not (isinstance(a, numpy.ndarray) or isinstance(a, xp.ndarray)):
        raise InputTypeError(f"{name} must be an array ({xp.__name__}.ndarray), got {type(a).__name__}")
    check_finite = check_bool(check_finite, "check_finite")
    if a.dtype.kind == "f" and a.dtype.itemsize in (4, 8) and not a.dtype.isnative:
        # one rule: refused, not converted (a silent copy would hide the cost, and the caller's
        # array would not be the one computed on)
        raise InputTypeError(f"{name} has non-native byte order ({a.dtype.str}, "
                             f"{'big' if a.dtype.byteorder == '>' else 'little'}-endian); convert it first, e.g. "
                             f"{name}.astype(numpy.float{a.dtype.itemsize * 8})")
    if a.dtype not in (numpy.float32, numpy.float64):
        raise InputTypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    want = dims or (f"{ndim}-D" if ndim is not None else "")
    if ndim is not None and a.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D {want}, got shape {tuple(a.shape)}")
    if shape is not None:
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            exp = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise InputError(f"{name} must have shape {exp}{' ' + dims if dims else ''}, got {tuple(a.shape)}")
    if a.size == 0:
        raise InputError(f"{name} must not be empty, got shape {tuple(a.shape)}")
    if check_finite and not bool(xp.isfinite(a).all()):
        raise InputError(f"{name} contains NaN or inf (pass check_finite=False to skip this check)")
    return a


def check_int(v, name: str, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """An integer (bool excluded) within [min_value, max_value]."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if min_value is not None and v < min_value:
        raise InputError(f"{name} must be >= {min_value}, got {v}")
    if max_value is not None and v > max_value:
        raise InputError(f"{name} must be <= {max_value}, got {v}")
    return v


def check_bool(v, name: str) -> bool:
    """A flag: True or False (Python's bool or numpy.bool_), not a string or a number that is truthy."""
    if not isinstance(v, (bool, numpy.bool_)):
        raise InputTypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def check_positive_float(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if not numpy.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {v}")
    return v


def check_kernel(k, name: str = "k") -> int:
    """An odd kernel size >= 1 (the 1D convolution over channels is centred)."""
    k = check_int(k, name, min_value=1)
    if k % 2 == 0:
        raise InputError(f"{name} must be odd (the kernel is centred on each channel), got {k}")
    return k


def check_same_dtype(ref, other, name: str, ref_name: str = "x"):
    if other.dtype != ref.dtype:
        raise InputTypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {other.dtype}")
