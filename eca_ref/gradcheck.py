"""Numerical gradients by central differences, in float64.

This is how every hand-written backward pass of eca-ref is proved: perturb one
entry of an input by ±h, run the forward pass twice, and compare

    (f(x + h e_i) - f(x - h e_i)) / (2h) · df        (a directional derivative)

with the analytic gradient. ``df`` is a random upstream gradient, so a
backward pass that is right only for ``df = 1`` is caught. Float32 has about
7 significant digits: central differences with h = 1e-5 would lose almost all
of them, which is why every check runs in float64.
"""
from __future__ import annotations

from eca_ref.backend import get_xp
from eca_ref.errors import InputTypeError


def rel_error(a, b) -> float:
    """max |a - b| / max(1e-8, |a| + |b|), element-wise, as in CS231n."""
    xp = get_xp()
    a = xp.asarray(a, dtype=xp.float64)
    b = xp.asarray(b, dtype=xp.float64)
    if a.shape != b.shape:
        raise InputTypeError(f"rel_error needs arrays of one shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(xp.max(xp.abs(a - b) / xp.maximum(1e-8, xp.abs(a) + xp.abs(b))))


def eval_numerical_gradient_array(f, x, df, h: float = 1e-5):
    """Numerical gradient of ``sum(f(x) * df)`` with respect to ``x``.

    ``f`` takes no argument and reads ``x``, which is perturbed in place one
    entry at a time and restored afterwards.

    Args:
        f: callable returning an array (the forward pass of interest).
        x: float64 array, perturbed in place and restored.
        df: upstream gradient, shape of f's output.
        h: step.

    Returns:
        array of x's shape.
    """
    xp = get_xp()
    if x.dtype != xp.float64:
        raise InputTypeError(f"gradient checks need float64 (float32 hides bugs), got x of dtype {x.dtype}")
    if not x.flags.c_contiguous:
        raise InputTypeError("x must be C-contiguous so that it can be perturbed in place")
    grad = xp.zeros_like(x)
    flat_x = x.reshape(-1)  # a view: writes go to x
    flat_g = grad.reshape(-1)
    for i in range(flat_x.size):
        old = float(flat_x[i])
        flat_x[i] = old + h
        pos = xp.array(f(), dtype=xp.float64, copy=True)
        flat_x[i] = old - h
        neg = xp.array(f(), dtype=xp.float64, copy=True)
        flat_x[i] = old
        flat_g[i] = xp.sum((pos - neg) * df) / (2 * h)
    return grad
