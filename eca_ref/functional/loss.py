"""Softmax cross-entropy (``torch.nn.functional.cross_entropy``), with optional label smoothing.

.. math::

    \\log p_{nk} = z_{nk} - \\log \\sum_j e^{z_{nj}}, \\qquad
    q_{nk} = (1 - \\varepsilon)\\,[k = t_n] + \\varepsilon / K, \\qquad
    L = -\\frac{1}{N} \\sum_n \\sum_k q_{nk} \\log p_{nk}

The log-sum-exp is taken after subtracting each row's maximum, so no exponential overflows.
The gradient is ``dL/dz = (softmax(z) - q) / N``.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

from eca_ref.backend import get_xp, is_array
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_float_array

__all__ = ["CrossEntropyCache", "cross_entropy_forward", "cross_entropy_backward", "softmax_cross_entropy",
           "cross_entropy_loop", "log_softmax"]


class CrossEntropyCache(NamedTuple):
    probs: object    # (N, K) softmax(z)
    target: object   # (N,) integer class indices
    smoothing: float


def log_softmax(z):
    """Row-wise log softmax of (N, K) logits, numerically stable."""
    xp = get_xp()
    shifted = z - z.max(axis=1, keepdims=True)  # (N, K), max 0 per row
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def _check_target(target, N, K):
    if not is_array(target):
        raise InputTypeError(f"target must be an integer array of shape ({N},), got {type(target).__name__}")
    if target.dtype.kind not in "iu":
        raise InputTypeError(f"target must have an integer dtype (class indices), got {target.dtype}")
    if target.shape != (N,):
        raise InputError(f"target must have shape ({N},) (one class index per row of logits), "
                         f"got {tuple(target.shape)}")
    if int(target.min()) < 0 or int(target.max()) >= K:
        raise InputError(f"target values must be class indices in [0, {K - 1}], "
                         f"got values in [{int(target.min())}, {int(target.max())}]")


def cross_entropy_forward(logits, target, *, label_smoothing: float = 0.0, check_finite: bool = True):
    """Mean softmax cross-entropy of a batch.

    Args:
        logits: unnormalised scores z, float32 or float64.
        target: integer class indices.
        label_smoothing: epsilon in [0, 1): the target puts 1 - epsilon + epsilon/K on the true
            class and epsilon/K on every other (PyTorch's convention).
        check_finite: reject NaN/inf in logits.

    Shape:
        logits: (N, K), target: (N,) -> loss: a float

    Returns:
        (loss, cache)

    Example:
        >>> import numpy as np
        >>> loss, _ = cross_entropy_forward(np.zeros((2, 4)), np.array([0, 3]))
        >>> round(loss, 6) == round(float(np.log(4)), 6)
        True
    """
    xp = get_xp()
    check_float_array(logits, "logits", ndim=2, dims="(N, K)", check_finite=check_finite)
    N, K = logits.shape
    _check_target(target, N, K)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= float(label_smoothing) < 1.0:
        raise InputError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
    eps = float(label_smoothing)
    logp = log_softmax(logits)                                   # (N, K)
    picked = logp[xp.arange(N), target]                          # (N,)
    per_row = -(1.0 - eps) * picked
    if eps:
        per_row = per_row - eps * logp.mean(axis=1)
    loss = float(per_row.mean())
    return loss, CrossEntropyCache(xp.exp(logp), target, eps)


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    """dL/dlogits = dloss * (softmax(z) - q) / N, shape (N, K)."""
    xp = get_xp()
    probs, target, eps = cache.probs, cache.target, cache.smoothing
    N, K = probs.shape
    d = probs - eps / K if eps else probs.copy()                # (N, K)
    d[xp.arange(N), target] -= 1.0 - eps
    d *= float(dloss) / N
    return d


def softmax_cross_entropy(logits, target, *, label_smoothing: float = 0.0, check_finite: bool = True):
    """Loss and its gradient in one call: (loss, dlogits)."""
    loss, cache = cross_entropy_forward(logits, target, label_smoothing=label_smoothing, check_finite=check_finite)
    return loss, cross_entropy_backward(1.0, cache)


def cross_entropy_loop(logits, target, *, label_smoothing: float = 0.0) -> float:
    """The definition row by row, with the max-shift written out."""
    import math
    N, K = logits.shape
    total = 0.0
    for n in range(N):
        row = [float(v) for v in logits[n]]
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        for k in range(K):
            q = (1.0 - label_smoothing) * (k == int(target[n])) + label_smoothing / K
            total -= q * (row[k] - lse)
    return total / N
