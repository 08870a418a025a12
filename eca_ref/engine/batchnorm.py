"""The engine's batch normalisation: :mod:`eca_ref.functional.batchnorm` tuned for the CPU, and synchronised.

The same function as the reference (tests/test_engine.py compares them), computed on the
channel-major memory the engine's convolution hands over, and able to take the statistics of a
whole batch whose shards run in different threads or processes (``allreduce``).

The formulas (forward, running statistics, backward) are the reference's, written out in
:mod:`eca_ref.functional.batchnorm`.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import get_xp
from eca_ref.errors import InputError
from eca_ref.functional.batchnorm import RunningStats, check_bn_args
from eca_ref.validation import check_float_array

__all__ = ["BatchNormCache", "batchnorm2d_forward", "batchnorm2d_backward"]



class BatchNormCache(NamedTuple):
    xc: object       # (N, C, H, W) centred input x - mu, channel-major memory; xhat = xc * inv_std
    inv_std: object  # (C,) 1 / sqrt(var + eps)
    weight: object   # (C,) gamma
    train: bool
    allreduce: object = None  # the shards' reduce function (synchronised batch norm), or None
    shift: object = None      # (C,) with allreduce: x - mean = xc + shift (xc is centred on the shard's mean)


def batchnorm2d_forward(x, weight, bias, running_mean, running_var, *, train: bool, momentum: float = 0.1,
                        eps: float = 1e-5, check_finite: bool = True, allreduce=None):
    """:func:`eca_ref.functional.batchnorm.batchnorm2d_forward` (the same arguments, shapes and values to
    rounding), computed channel by channel on the channel-major view, with one more argument:

    Args:
        allreduce: x is one shard of a batch cut into shards (see
            :mod:`eca_ref.engine.shards`): a function that maps this shard's partial sums
            (a float64 vector) to their sum over every shard; if it has a ``gather`` method
            (every shard's vector, stacked in shard order), the forward pass exchanges once
            instead of twice. The statistics are then those of the whole batch (synchronised
            batch norm). None: x is the whole batch.

    Returns:
        (out, cache, RunningStats(mean, var)); out is channel-major in memory.

    Example:
        >>> import numpy as np
        >>> x = np.arange(8.0).reshape(2, 1, 2, 2)
        >>> out, _, stats = batchnorm2d_forward(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), train=True)
        >>> round(float(out.mean()), 6), round(float(stats.mean[0]), 2), round(float(stats.var[0]), 4)
        (0.0, 0.35, 1.5)
    """
    xp = get_xp()
    check_bn_args(x, weight, bias, running_mean, running_var, momentum, eps, check_finite)
    N, C, H, W = x.shape
    M = N * H * W
    # Speed: everything runs on the channel-major view (C, N, H, W). The convolutions hand over
    # their output in that memory order, so each channel is one block and the per-channel
    # broadcasts below run over long contiguous rows. Sums use einsum (several times faster than
    # .mean/.sum over axes (0, 2, 3)); everything stays in x's dtype (Python floats only).
    x_cm = x.transpose(1, 0, 2, 3)                                  # (C, N, H, W)
    if train and M < 2:
        raise InputError(f"x must have more than one value per channel in train mode, got shape {tuple(x.shape)}")
    xc = xp.empty((C, N, H, W), dtype=x.dtype)                      # centred, contiguous
    out = xp.empty((C, N, H, W), dtype=x.dtype)
    inv_std = xp.empty(C, dtype=x.dtype)
    mean, var = (xp.empty(C, dtype=x.dtype), xp.empty(C, dtype=x.dtype)) if train else (running_mean, running_var)

    shift = None
    if train and allreduce is not None:
        # One shard of the batch: the statistics of the whole batch. Each shard centres its values
        # on its own mean m_i (two-pass, in its dtype: M2_i = sum (x - m_i)^2); the whole batch's
        # M2 = sum_i [M2_i + n_i (m_i - mean)^2] (Chan et al.'s combination of partial variances,
        # no cancellation). One exchange of per-channel float64 vectors where the reduce function
        # can gather (every shard's sum, M2 and count), else two reductions (sums and counts,
        # then the M2 terms); the same numbers either way. No extra pass over the data: xc stays
        # centred on m_i, and shift = m_i - mean is folded into beta here and into the backward's sums.
        xp.copyto(xc, x_cm)                                                     # contiguous (see part() below)
        local_sum = xp.einsum("cnhw->c", xc)                                     # (C,)
        local_mean = local_sum / M
        xc -= local_mean[:, None, None, None]
        local_m2 = xp.einsum("cnhw,cnhw->c", xc, xc)
        n_i = M
        if hasattr(allreduce, "gather"):
            # one exchange: every shard's (sum, M2, count); each shard then combines them itself, in
            # shard order, with exactly the arithmetic of the two reductions below
            vec = xp.empty(2 * C + 1, dtype=xp.float64)
            vec[:C], vec[C:2 * C], vec[-1] = local_sum, local_m2, M
            every = allreduce.gather(vec)                                       # (shards, 2 C + 1)
            counts = [int(c) for c in every[:, -1]]
            M = sum(counts)
            total = every[0, :C].copy()
            for row in every[1:]:
                total += row[:C]
            mean64 = total / M
            # shard j's term M2_j + n_j (m_j - mean)^2, with m_j as shard j computed it (in x's dtype)
            terms = [row[C:2 * C] + n_j * ((row[:C].astype(x.dtype) / n_j).astype(xp.float64) - mean64) ** 2
                     for row, n_j in zip(every, counts)]
            m2 = terms[0]
            for term in terms[1:]:
                m2 += term
            var[...] = m2 / M
        else:
            vec = xp.empty(C + 1, dtype=xp.float64)
            vec[:C], vec[-1] = local_sum, M
            total = allreduce(vec)
            M = int(total[-1])
            mean64 = total[:C] / M
            m2 = local_m2 + n_i * (local_mean.astype(xp.float64) - mean64) ** 2
            var[...] = allreduce(m2) / M
        mean[...] = mean64
        shift = (local_mean - mean64).astype(x.dtype)                           # (C,) m_i - mean
        train_stats = False                                                     # done: part() normalises
    else:
        train_stats = train

    # A stride-1 convolution's output is a cropped view (rows of W among W + 2 p stored values): NumPy
    # runs several times slower over such short rows (8x8 maps: a sum 10x, a product 3x) than over a
    # contiguous block, so that x is first copied into xc (one pass it reads anyway) and centred in place.
    strided = not x_cm.flags.c_contiguous

    def part(c0, c1):
        if train_stats and strided:
            xp.copyto(xc[c0:c1], x_cm[c0:c1])
            mean[c0:c1] = xp.einsum("cnhw->c", xc[c0:c1]) / M                 # (c,)
            xc[c0:c1] -= mean[c0:c1, None, None, None]
            var[c0:c1] = xp.einsum("cnhw,cnhw->c", xc[c0:c1], xc[c0:c1]) / M  # biased (two-pass: no cancellation)
        elif train_stats:
            mean[c0:c1] = xp.einsum("cnhw->c", x_cm[c0:c1]) / M               # (c,)
            xp.subtract(x_cm[c0:c1], mean[c0:c1, None, None, None], out=xc[c0:c1])
            var[c0:c1] = xp.einsum("cnhw,cnhw->c", xc[c0:c1], xc[c0:c1]) / M  # biased (two-pass: no cancellation)
        elif not train:
            xp.subtract(x_cm[c0:c1], mean[c0:c1, None, None, None], out=xc[c0:c1])
        inv_std[c0:c1] = 1.0 / xp.sqrt(var[c0:c1] + eps)
        # out = gamma xhat + beta = xc * (gamma inv_std) + beta: two passes, xhat itself is never stored
        sc = weight[c0:c1] * inv_std[c0:c1]
        xp.multiply(xc[c0:c1], sc[:, None, None, None], out=out[c0:c1])
        beta = bias[c0:c1] if shift is None else bias[c0:c1] + shift[c0:c1] * sc  # xhat = (xc + shift) inv_std
        out[c0:c1] += beta[:, None, None, None]

    part(0, C)
    if train:
        new_mean = (1.0 - momentum) * running_mean + momentum * mean
        new_var = (1.0 - momentum) * running_var + momentum * (var * (M / (M - 1)))
        stats = RunningStats(new_mean.astype(x.dtype, copy=False), new_var.astype(x.dtype, copy=False))
    else:
        stats = RunningStats(running_mean, running_var)
    return (out.transpose(1, 0, 2, 3), BatchNormCache(xc.transpose(1, 0, 2, 3), inv_std, weight, bool(train), allreduce,
                                                   shift),
            stats)


def batchnorm2d_backward(dout, cache: BatchNormCache, *, overwrite_dout: bool = False):
    """BatchNorm2d, backward.

    Args:
        dout: upstream gradient.
        cache: from the forward pass.
        overwrite_dout: dx may be written into dout's memory (saves an allocation, for a caller that
            owns dout). Default False: dout is left unchanged. The engine's layers leave it False:
            in a block's backward the identity shortcut still reads the gradient the BN receives.

    Shape:
        dout: (N, C, H, W) -> dx: (N, C, H, W); grads["weight"], grads["bias"]: (C,)

    With a forward ``allreduce`` (x was one shard of the batch), the sums the gradient needs are
    reduced over the shards the same way, and grads holds this shard's share of the parameter
    gradients (sum them over the shards, like every other parameter's).

    Returns:
        (dx, grads)
    """
    xp = get_xp()
    xc = cache.xc
    check_float_array(dout, "dout", shape=xc.shape, dims="(N, C, H, W)", check_finite=False)
    N, C, H, W = xc.shape
    M = N * H * W
    d_cm, xc_cm = dout.transpose(1, 0, 2, 3), xc.transpose(1, 0, 2, 3)  # (C, N, H, W) views, see forward
    inv_std = cache.inv_std
    scale = cache.weight * inv_std                                       # (C,) gamma / sqrt(var + eps)
    dbias = xp.empty(C, dtype=dout.dtype)
    dweight = xp.empty(C, dtype=dout.dtype)
    dx = d_cm if overwrite_dout else xp.empty((C, N, H, W), dtype=dout.dtype)

    sync = cache.train and cache.allreduce is not None
    if sync:  # one shard: this shard's sums (its grads), and the whole batch's (for dx)
        dbias[...] = xp.einsum("cnhw->c", d_cm)
        # sum dout xhat with xhat = (xc + shift) inv_std (xc is centred on the shard's own mean)
        dweight[...] = (xp.einsum("cnhw,cnhw->c", d_cm, xc_cm) + cache.shift * dbias) * inv_std
        local = xp.empty(2 * C + 1, dtype=xp.float64)
        local[:C], local[C:2 * C], local[-1] = dbias, dweight, M
        total = cache.allreduce(local)
        M = int(total[-1])
        dbias_all, dweight_all = total[:C].astype(dout.dtype), total[C:2 * C].astype(dout.dtype)
    else:
        dbias_all, dweight_all = dbias, dweight  # filled by part() below

    def part(c0, c1):  # channels c0..c1-1 (the math is per channel)
        d, xcc, sc = d_cm[c0:c1], xc_cm[c0:c1], scale[c0:c1, None, None, None]
        if not sync:
            dbias[c0:c1] = xp.einsum("cnhw->c", d)                                # (c,)
            dweight[c0:c1] = xp.einsum("cnhw,cnhw->c", d, xcc) * inv_std[c0:c1]  # (c,) = sum dout * xhat
        xp.multiply(d, sc, out=dx[c0:c1])
        if cache.train:
            # dx = scale (dout - dbias / M - xhat dweight / M) with xhat = xc inv_std, as
            # dx = scale dout + a xc + b per channel: three passes over memory
            a = -scale[c0:c1] * inv_std[c0:c1] * dweight_all[c0:c1] / M          # (c,)
            b = -scale[c0:c1] * dbias_all[c0:c1] / M                             # (c,)
            if sync:
                b = b + a * cache.shift[c0:c1]                                   # a (xc + shift) + b
            t = xp.multiply(xcc, a[:, None, None, None])
            t += b[:, None, None, None]
            dx[c0:c1] += t

    part(0, C)
    return dx.transpose(1, 0, 2, 3), {"weight": dweight, "bias": dbias}
