"""Global average pooling (GAP), the paper's g(X).

.. math::  y_c = g(X)_c = \\frac{1}{HW} \\sum_{i=1}^{H} \\sum_{j=1}^{W} X_{c,i,j}

Its backward spreads each channel's gradient evenly over the H x W positions:
``dx[n, c, i, j] = dy[n, c] / (H W)``.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import get_xp
from eca_ref.validation import check_float_array


class GapCache(NamedTuple):
    shape: tuple  # (N, C, H, W) of the input


def gap_forward(x, *, check_finite: bool = True):
    """Global average pooling over H and W.

    Args:
        x: feature map, float32 or float64.
        check_finite: reject NaN/inf in x (one pass over the data).

    Shape:
        x: (N, C, H, W) -> y: (N, C)

    Returns:
        (y, cache)

    Example:
        >>> import numpy as np
        >>> y, _ = gap_forward(np.arange(8.0).reshape(1, 2, 2, 2))
        >>> y
        array([[1.5, 5.5]])
    """
    check_float_array(x, "x", ndim=4, dims="(N, C, H, W)", check_finite=check_finite)
    H, W = x.shape[2], x.shape[3]
    y = get_xp().einsum("nchw->nc", x) / (H * W)  # (N, C); einsum's sum is ~2x faster than mean here
    return y, GapCache(tuple(x.shape))


def gap_backward(dy, cache: GapCache):
    """Gradient of GAP: every position of channel c gets dy[n, c] / (H W).

    Shape:
        dy: (N, C) -> dx: (N, C, H, W)
    """
    xp = get_xp()
    N, C, H, W = cache.shape
    check_float_array(dy, "dy", shape=(N, C), dims="(N, C)", check_finite=False)
    return xp.broadcast_to((dy / (H * W))[:, :, None, None], (N, C, H, W)).copy()  # (N, C, H, W)


def gap_forward_loop(x):
    """Plain-loop GAP, the version to read first: y[n, c] = mean of x[n, c, :, :]."""
    xp = get_xp()
    N, C, H, W = x.shape
    y = xp.zeros((N, C), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            total = 0.0
            for i in range(H):
                for j in range(W):
                    total += x[n, c, i, j]
            y[n, c] = total / (H * W)
    return y
