"""Fully connected layer (``torch.nn.Linear``), forward and backward.

.. math::  \\text{out} = x W^T + b

Backward: ``dx = dout W``, ``dW = dout^T x``, ``db = sum over the batch of dout``.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import get_xp
from eca_ref.errors import InputError
from eca_ref.validation import check_float_array, check_same_dtype

__all__ = ["LinearCache", "linear_forward", "linear_backward", "linear_forward_loop"]


class LinearCache(NamedTuple):
    x: object       # (N, in)
    w: object       # (out, in)
    has_bias: bool


def linear_forward(x, w, b=None, *, check_finite: bool = True):
    """out = x @ w.T + b.

    Args:
        x: input, float32 or float64.
        w: weight (PyTorch's ``Linear.weight``), the dtype of x; PyTorch initialises it (and b)
            uniform in (-1/sqrt(in), 1/sqrt(in)).
        b: optional bias, or None.
        check_finite: reject NaN/inf (one pass; off in training).

    Shape:
        x: (N, in), w: (out, in), b: (out,) -> out: (N, out)

    Returns:
        (out, cache)

    Example:
        >>> import numpy as np
        >>> out, _ = linear_forward(np.ones((2, 3)), np.arange(6.0).reshape(2, 3), np.array([0.5, -0.5]))
        >>> out
        array([[ 3.5, 11.5],
               [ 3.5, 11.5]])
    """
    check_float_array(x, "x", ndim=2, dims="(N, in)", check_finite=check_finite)
    check_float_array(w, "w", ndim=2, dims="(out, in)", check_finite=check_finite)
    check_same_dtype(x, w, "w")
    if w.shape[1] != x.shape[1]:
        raise InputError(f"w must have shape (out, {x.shape[1]}) to match x of shape {tuple(x.shape)}, "
                         f"got {tuple(w.shape)}")
    out = x @ w.T  # (N, out)
    if b is not None:
        check_float_array(b, "b", shape=(w.shape[0],), dims="(out,)", check_finite=check_finite)
        check_same_dtype(x, b, "b")
        out += b
    return out, LinearCache(x, w, b is not None)


def linear_backward(dout, cache: LinearCache):
    """Shape: dout (N, out) -> dx (N, in); grads["weight"] (out, in), grads["bias"] (out,).

    Returns:
        (dx, grads)
    """
    x, w = cache.x, cache.w
    check_float_array(dout, "dout", shape=(x.shape[0], w.shape[0]), dims="(N, out)", check_finite=False)
    grads = {"weight": dout.T @ x}  # (out, in)
    if cache.has_bias:
        grads["bias"] = dout.sum(axis=0)  # (out,)
    return dout @ w, grads  # (N, in)


def linear_forward_loop(x, w, b=None):
    """out[n, o] = b[o] + sum_i x[n, i] w[o, i], element by element."""
    xp = get_xp()
    N, D = x.shape
    out = xp.zeros((N, w.shape[0]), dtype=x.dtype)
    for n in range(N):
        for o in range(w.shape[0]):
            total = b[o] if b is not None else 0.0
            for i in range(D):
                total += x[n, i] * w[o, i]
            out[n, o] = total
    return out
