"""Batch normalisation over the channels of an NCHW map (``torch.nn.BatchNorm2d``), forward and backward.

.. math::

    \\hat x_{nchw} = \\frac{x_{nchw} - \\mu_c}{\\sqrt{\\sigma^2_c + \\epsilon}}, \\qquad
    \\text{out}_{nchw} = \\gamma_c \\hat x_{nchw} + \\beta_c

Train mode: mu and sigma^2 are the batch statistics over (N, H, W) (sigma^2 biased, divided by
M = N H W), and the running statistics move towards them:
``running_mean <- (1 - momentum) running_mean + momentum mu`` and
``running_var <- (1 - momentum) running_var + momentum sigma^2 M / (M - 1)`` (the *unbiased*
variance, as PyTorch does). Eval mode: mu and sigma^2 are the running statistics, unchanged.

Nothing is mutated: the forward pass returns the new running statistics.

Backward in train mode (mu and sigma depend on x)::

    dx = gamma / sqrt(var + eps) * (dout - mean(dout) - xhat * mean(dout * xhat))

(means over N, H, W); in eval mode ``dx = gamma / sqrt(running_var + eps) * dout``.

Read :func:`batchnorm2d_forward_loop` and :func:`batchnorm2d_backward_loop` at the bottom for the
same formulas one channel at a time. The engine (``eca_ref.engine.batchnorm``) computes the same
function faster, and can take the statistics of a batch split over several cores;
tests/test_engine.py checks that the two agree.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import get_xp
from eca_ref.errors import InputError
from eca_ref.validation import check_float_array, check_same_dtype

__all__ = ["check_bn_args", "BatchNormCache", "RunningStats", "batchnorm2d_forward", "batchnorm2d_backward",
           "batchnorm2d_forward_loop", "batchnorm2d_backward_loop"]


class BatchNormCache(NamedTuple):
    xhat: object     # (N, C, H, W) the normalised input
    inv_std: object  # (C,) 1 / sqrt(var + eps)
    weight: object   # (C,) gamma
    train: bool


class RunningStats(NamedTuple):
    mean: object  # (C,)
    var: object   # (C,)


def check_bn_args(x, weight, bias, running_mean, running_var, momentum, eps, check_finite):
    check_float_array(x, "x", ndim=4, dims="(N, C, H, W)", check_finite=check_finite)
    C = x.shape[1]
    for name, a in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        check_float_array(a, name, shape=(C,), dims="(C,)", check_finite=check_finite)
        check_same_dtype(x, a, name)
    if not 0.0 <= float(momentum) <= 1.0:
        raise InputError(f"momentum must be in [0, 1], got {momentum}")
    if not float(eps) > 0.0:
        raise InputError(f"eps must be > 0, got {eps}")


def batchnorm2d_forward(x, weight, bias, running_mean, running_var, *, train: bool, momentum: float = 0.1,
                        eps: float = 1e-5, check_finite: bool = True):
    """BatchNorm2d, forward.

    Args:
        x: input, float32 or float64.
        weight, bias: gamma and beta (``BatchNorm2d.weight`` / ``.bias``; initialised to 1 and 0).
        running_mean, running_var: the running statistics (initialised to 0 and 1).
        train: batch statistics (True) or running statistics (False).
        momentum, eps: PyTorch's defaults 0.1 and 1e-5.
        check_finite: reject NaN/inf in the inputs (one pass; off in training).

    Shape:
        x: (N, C, H, W) -> out: (N, C, H, W); weight, bias, running_mean, running_var: (C,)

    Returns:
        (out, cache, RunningStats(mean, var)) -- the new running statistics (the old ones in eval mode).

    Example:
        >>> import numpy as np
        >>> x = np.arange(8.0).reshape(2, 1, 2, 2)
        >>> out, _, stats = batchnorm2d_forward(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), train=True)
        >>> round(float(out.mean()), 6), round(float(stats.mean[0]), 2), round(float(stats.var[0]), 4)
        (0.0, 0.35, 1.5)
    """
    check_bn_args(x, weight, bias, running_mean, running_var, momentum, eps, check_finite)
    xp = get_xp()
    N, C, H, W = x.shape
    M = N * H * W                                               # values per channel
    if train:
        if M < 2:
            raise InputError(f"x must have more than one value per channel in train mode, got shape {tuple(x.shape)}")
        mean = x.mean(axis=(0, 2, 3))                           # (C,) mu
        var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))   # (C,) sigma^2, biased
        new_mean = (1.0 - momentum) * running_mean + momentum * mean
        new_var = (1.0 - momentum) * running_var + momentum * var * (M / (M - 1))   # unbiased, as PyTorch
        stats = RunningStats(new_mean.astype(x.dtype), new_var.astype(x.dtype))
    else:
        mean, var = running_mean, running_var
        stats = RunningStats(running_mean, running_var)
    inv_std = 1.0 / xp.sqrt(var + eps)                          # (C,)
    xhat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]   # (N, C, H, W)
    out = weight[None, :, None, None] * xhat + bias[None, :, None, None]    # (N, C, H, W)
    return out, BatchNormCache(xhat, inv_std, weight, bool(train)), stats


def batchnorm2d_backward(dout, cache: BatchNormCache):
    """BatchNorm2d, backward.

    Train mode (mu and sigma depend on x), with means over N, H, W::

        dx = gamma / sqrt(var + eps) * (dout - mean(dout) - xhat * mean(dout * xhat))

    Eval mode: ``dx = gamma / sqrt(running_var + eps) * dout``.

    Shape:
        dout: (N, C, H, W) -> dx: (N, C, H, W); grads["weight"], grads["bias"]: (C,)

    Returns:
        (dx, grads)
    """
    xhat, inv_std, weight, train = cache
    check_float_array(dout, "dout", shape=xhat.shape, dims="(N, C, H, W)", check_finite=False)
    dbias = dout.sum(axis=(0, 2, 3))                            # (C,) dL/dbeta
    dweight = (dout * xhat).sum(axis=(0, 2, 3))                 # (C,) dL/dgamma
    scale = (weight * inv_std)[None, :, None, None]             # gamma / sqrt(var + eps)
    if not train:
        return scale * dout, {"weight": dweight, "bias": dbias}
    N, C, H, W = xhat.shape
    M = N * H * W
    mean_dout = (dbias / M)[None, :, None, None]                # mean(dout)
    mean_dout_xhat = (dweight / M)[None, :, None, None]         # mean(dout * xhat)
    dx = scale * (dout - mean_dout - xhat * mean_dout_xhat)     # (N, C, H, W)
    return dx, {"weight": dweight, "bias": dbias}


# ---------------------------------------------------------------- plain loops (read these first)

def batchnorm2d_forward_loop(x, weight, bias, running_mean, running_var, *, train: bool, momentum: float = 0.1,
                             eps: float = 1e-5):
    """One channel at a time, with the statistics written out: (out, new_mean, new_var)."""
    xp = get_xp()
    N, C, H, W = x.shape
    M = N * H * W
    out = xp.zeros_like(x)
    new_mean = xp.array(running_mean, copy=True)
    new_var = xp.array(running_var, copy=True)
    for c in range(C):
        values = x[:, c].reshape(-1)
        if train:
            mu = sum(float(v) for v in values) / M
            var = sum((float(v) - mu) ** 2 for v in values) / M
            new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
            new_var[c] = (1 - momentum) * running_var[c] + momentum * var * M / (M - 1)
        else:
            mu, var = float(running_mean[c]), float(running_var[c])
        out[:, c] = weight[c] * (x[:, c] - mu) / (var + eps) ** 0.5 + bias[c]
    return out, new_mean, new_var


def batchnorm2d_backward_loop(dout, x, weight, *, eps: float = 1e-5):
    """Train-mode gradients of one channel at a time, through the chain rule written in sums: (dx, dw, db)."""
    xp = get_xp()
    N, C, H, W = x.shape
    M = N * H * W
    dx = xp.zeros_like(x)
    dw = xp.zeros(C, dtype=x.dtype)
    db = xp.zeros(C, dtype=x.dtype)
    for c in range(C):
        xc, g = x[:, c], dout[:, c]
        mu = xc.sum() / M
        var = ((xc - mu) ** 2).sum() / M
        inv = 1.0 / (var + eps) ** 0.5
        xhat = (xc - mu) * inv
        db[c] = g.sum()
        dw[c] = (g * xhat).sum()
        dxhat = g * weight[c]
        dvar = (dxhat * (xc - mu)).sum() * -0.5 * inv ** 3
        dmu = -(dxhat * inv).sum() + dvar * (-2.0 * (xc - mu)).sum() / M
        dx[:, c] = dxhat * inv + dvar * 2.0 * (xc - mu) / M + dmu / M
    return dx, dw, db
