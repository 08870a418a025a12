"""The engine's 2D convolution: the function of :mod:`eca_ref.functional.conv`, tuned for the CPU.

The same contract as the reference (arguments, shapes, results to rounding; tests/test_engine.py
compares them), with a memory layout chosen for speed.

.. math::

    \\text{out}[n, f, h, w] = b[f] + \\sum_{c=0}^{C-1} \\sum_{i=0}^{k_h-1} \\sum_{j=0}^{k_w-1}
        w[f, c, i, j] \\; x_{pad}[n, c, s h + i, s w + j]

where ``x_pad`` is x with ``p`` zeros on each side of H and W, ``s`` the stride.

How the vectorised version works (im2col, matrix products over chunks of columns):

1. x is copied once into a zero-padded buffer in *channel-major* order (C, N, Hp, Wp): every
   channel of the whole batch is one contiguous block.
2. A strided view of that buffer presents every receptive field as a column, shape
   (C, kh, kw, N Hp Wp) for stride 1, without copying. For stride 1 the columns run over *all*
   padded positions of the batch, so each row of the column matrix (one (c, i, j)) is a single
   contiguous slice of the buffer, shifted by i Wp + j: copying a chunk of columns is C kh kw
   plain slice copies. The columns that fall on padding (or straddle two images) are computed
   and dropped. For stride > 1 the view has shape (C, kh, kw, N, Ho, Wo) (exact columns).
3. ``w.reshape(F, C kh kw) @ cols`` is the convolution: (F, columns). It is computed chunk by
   chunk (a chunk of columns stays in the CPU caches) and each chunk's product is written straight
   into its slice of one (F, N Hp Wp) output matrix (BLAS writes into a strided slice; no copy).
4. The result is returned as an (N, F, Ho, Wo) array that is a transposed (and, for stride 1,
   cropped) *view* of that channel-major matrix. The values are NCHW (index them as usual); only
   the memory order is channel-major. The next layers (batchnorm, ReLU, the next conv's padded
   copy) read it channel by channel, which is the order they prefer; an NCHW-ordered input works
   too, at the price of a transposing copy in step 1.

Backward: ``dw = sum over chunks of cols @ dout.T`` (the same column chunks, with dout laid out
like the forward's output matrix, zeros on the dropped positions); for stride 1, ``dx`` is the
convolution of ``dout`` with the flipped, transposed kernel (a "full" convolution, padding
k - 1 - p), which reuses steps 1-3 -- no scatter; for stride > 1, ``dx`` scatters ``w.T @ dout``
back over the receptive fields (col2im). dx comes back channel-major as well.
"""
from __future__ import annotations

import os
from typing import NamedTuple

from eca_ref.backend import get_xp
from eca_ref.engine import blas
from eca_ref.functional.conv import check_conv_args, conv_output_size
from eca_ref.validation import check_float_array

__all__ = ["Conv2dCache", "conv2d_forward", "conv2d_backward"]


class Conv2dCache(NamedTuple):
    xbuf: object        # flat zero-padded channel-major copy of x (see _Grid), (C S + slack,)
    w: object           # (F, C, kh, kw)
    has_bias: bool
    x_shape: tuple      # (N, C, H, W)
    stride: int
    padding: int


# im2col works on chunks of columns whose matrix stays small enough for the CPU caches (the
# whole batch's matrix would be kh kw times the input, and filling fresh memory costs page faults).
# A chunk is at most CHUNK_COLUMNS columns and at most CHUNK_ELEMENTS values (wide layers take
# shorter chunks); both measured on a 2-core Xeon (2 MB L2 per core): 1024-2048 columns were
# 20% faster than 8192-16384 (the product reads its chunk from L2).
CHUNK_COLUMNS = 2048
CHUNK_ELEMENTS = 1 << 18
# With a multithreaded BLAS every matrix product is a synchronisation of its threads; on a shared
# 2-core machine whose other core is busy, each one can wait a scheduler tick for the second thread
# (measured: 9 s per training step with 2048-column chunks, about 1 s with 16x larger chunks, 0.26 s
# with one thread). So chunks are CHUNK_THREADED_FACTOR times larger when BLAS may use several threads.
CHUNK_THREADED_FACTOR = 16


def _blas_may_thread() -> bool:
    """False inside blas.one_thread() (BLAS runs one thread per call there) and where
    $OPENBLAS_NUM_THREADS / $OMP_NUM_THREADS / $MKL_NUM_THREADS (or the CPU count) say 1."""
    if blas.single_threaded():
        return False
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value) > 1
    return (os.cpu_count() or 1) > 1


class _Grid(NamedTuple):
    """Where a zero-padded, channel-major batch lives in a flat buffer.

    Each channel holds pad_w zeros, then pad_h zero rows, then for every image its H rows followed
    by pad_h zero rows; every row is W values followed by pad_w zeros. Neighbouring rows and images
    *share* their padding (the zeros after one row are the zeros before the next), which is all a
    window reaching pad past an edge needs, and it saves work: a stride-1 conv computes (and drops)
    every stored position, (H + p)(W + p) instead of (H + 2p)(W + 2p) per image (8x8 maps: 81
    instead of 100). The conventionally padded x_pad[n, c, hh, ww] is at c S + n Hs Ws + hh Ws + ww.
    """
    N: int
    C: int
    H: int
    W: int
    pad_h: int
    pad_w: int
    Hs: int   # stored rows per image: H + pad_h
    Ws: int   # stored values per row: W + pad_w
    S: int    # values per channel: pad_w + (pad_h + N Hs) Ws


def _grid(N, C, H, W, pad_h, pad_w) -> _Grid:
    Hs, Ws = H + pad_h, W + pad_w
    return _Grid(N, C, H, W, pad_h, pad_w, Hs, Ws, pad_w + (pad_h + N * Hs) * Ws)


def _padded_buffer(x, pad_h: int, pad_w: int, kh: int, kw: int):
    """x (N, C, H, W), any memory order -> (flat zero-padded channel-major copy, its _Grid).

    The slack after the last channel lets the stride-1 im2col view read (kh - 1) rows and
    (kw - 1) columns past it; those reads only feed output positions that are dropped. Only the
    padding is zeroed: the interior is overwritten by x anyway (one pass less over memory).
    """
    xp = get_xp()
    N, C, H, W = x.shape
    g = _grid(N, C, H, W, pad_h, pad_w)
    buf = xp.empty(C * g.S + kh * g.Ws + kw, dtype=x.dtype)
    per_channel = buf[:C * g.S].reshape(C, g.S)
    head = pad_w + pad_h * g.Ws
    images = per_channel[:, head:].reshape(C, N, g.Hs, g.Ws)
    buf[C * g.S:] = 0
    x_cm = x.transpose(1, 0, 2, 3)  # (C, N, H, W)

    per_channel[:, :head] = 0
    images[:, :, :H, W:] = 0
    images[:, :, H:] = 0
    images[:, :, :H, :W] = x_cm
    return buf, g


class _Geometry(NamedTuple):
    view: object   # (C, kh, kw, N Hs Ws) or (C, kh, kw, N, Ho, Wo) strided view of the buffer: every column
    P: int         # columns per image: Hs Ws (stride 1, dropped positions included) or Ho Wo
    flat: bool     # stride-1 layout (columns run over all stored positions)
    Hs: int
    Ws: int


def _im2col_view(buf, g: _Grid, kh, kw, stride):
    xp = get_xp()
    as_strided = xp.lib.stride_tricks.as_strided
    isz = buf.itemsize
    L1 = g.Hs * g.Ws
    Ho = conv_output_size(g.H, kh, stride, g.pad_h)
    Wo = conv_output_size(g.W, kw, stride, g.pad_w)
    if stride == 1 and Ho <= g.Hs and Wo <= g.Ws:
        # row (c, i, j) of the column matrix is the contiguous slice buf[c S + i Ws + j:][:N Hs Ws]
        view = as_strided(buf, shape=(g.C, kh, kw, g.N * L1), strides=(g.S * isz, g.Ws * isz, isz, isz))
        return _Geometry(view, L1, True, g.Hs, g.Ws)
    view = as_strided(buf, shape=(g.C, kh, kw, g.N, Ho, Wo),
                      strides=(g.S * isz, g.Ws * isz, isz, L1 * isz, stride * g.Ws * isz, stride * isz))
    return _Geometry(view, Ho * Wo, False, g.Hs, g.Ws)


def _chunks(geo, N, K):
    """Column ranges (c0, c1) of the chunks: any range for stride 1, whole images otherwise."""
    total = N * geo.P
    size = max(1, min(CHUNK_COLUMNS, CHUNK_ELEMENTS // K))
    if _blas_may_thread():
        size *= CHUNK_THREADED_FACTOR
    if not geo.flat:  # exact columns: whole images per chunk, so the view can be sliced by image
        size = max(1, size // geo.P) * geo.P
    return [(c0, min(total, c0 + size)) for c0 in range(0, total, size)], size


def _cols(geo, c0, c1, ws):
    """Copy columns c0..c1-1 of the column matrix into the workspace: (C kh kw, c1 - c0)."""
    C, kh, kw = geo.view.shape[:3]
    cols = ws[:C * kh * kw * (c1 - c0)].reshape(C * kh * kw, c1 - c0)  # contiguous, even for a short chunk
    if geo.flat:
        src = geo.view[..., c0:c1]                                  # (C, kh, kw, c1 - c0)
    else:
        src = geo.view[:, :, :, c0 // geo.P:c1 // geo.P]            # (C, kh, kw, nb, Ho, Wo)
    cols.reshape(src.shape)[...] = src
    return cols


def _conv_core(buf, g: _Grid, w, stride):
    """out = w2 @ cols over every column, chunk by chunk: (F, N P) -- the convolution over a padded buffer."""
    xp = get_xp()
    F, _, kh, kw = w.shape
    N, C = g.N, g.C
    geo = _im2col_view(buf, g, kh, kw, stride)
    w2 = w.reshape(F, C * kh * kw)
    out = xp.empty((F, N * geo.P), dtype=buf.dtype)
    chunks, size = _chunks(geo, N, C * kh * kw)

    ws = xp.empty(C * kh * kw * size, dtype=buf.dtype)  # one workspace, reused chunk to chunk
    for c0, c1 in chunks:
        # BLAS writes the chunk's product into its (strided) slice of out: no temporary, no copy
        xp.matmul(w2, _cols(geo, c0, c1, ws), out=out[:, c0:c1])
    return out, geo


def _nchw_view(out, geo, N, Ho, Wo):
    """(F, N P) product -> the (N, F, Ho, Wo) view (the stride-1 layout drops its padded positions)."""
    F = out.shape[0]
    if geo.flat:
        return out.reshape(F, N, geo.Hs, geo.Ws)[:, :, :Ho, :Wo].transpose(1, 0, 2, 3)
    return out.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3)


def conv2d_forward(x, w, b=None, *, stride: int = 1, padding: int = 0, check_finite: bool = True):
    """:func:`eca_ref.functional.conv.conv2d_forward`, computed over a channel-major padded buffer.

    The same arguments, shapes and values (to rounding). The result is a view of a channel-major
    (F, N, ...) array (for stride 1, rows of Wo among every W + padding stored values: the padding is
    shared, see _Grid); use it as any NCHW array.

    Example:
        >>> import numpy as np
        >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
        >>> out, _ = conv2d_forward(x, np.ones((1, 1, 3, 3)), padding=1)
        >>> out.shape, float(out[0, 0, 1, 1])
        ((1, 1, 4, 4), 45.0)
    """
    stride, padding = check_conv_args(x, w, b, stride, padding, check_finite)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    buf, g = _padded_buffer(x, padding, padding, kh, kw)
    out, geo = _conv_core(buf, g, w, stride)  # (F, N P)
    if b is not None:
        out += b[:, None]
    out = _nchw_view(out, geo, N, conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding))
    return out, Conv2dCache(buf, w, b is not None, tuple(x.shape), stride, padding)


def conv2d_backward(dout, cache: Conv2dCache, *, input_grad: bool = True):
    """:func:`eca_ref.functional.conv.conv2d_backward` for a cache of :func:`conv2d_forward`:
    (dx, grads), dx channel-major in memory; ``input_grad=False`` skips dx (returns None)."""
    xp = get_xp()
    w, stride, p = cache.w, cache.stride, cache.padding
    N, C, H, W = cache.x_shape
    F, _, kh, kw = w.shape
    Ho, Wo = conv_output_size(H, kh, stride, p), conv_output_size(W, kw, stride, p)
    check_float_array(dout, "dout", shape=(N, F, Ho, Wo), dims="(N, F, Ho, Wo)", check_finite=False)
    g = _grid(N, C, H, W, p, p)
    geo = _im2col_view(cache.xbuf, g, kh, kw, stride)
    d_cm = dout.transpose(1, 0, 2, 3)  # (F, N, Ho, Wo): a plain view when dout is channel-major
    grads = {}
    if cache.has_bias:
        grads["bias"] = xp.einsum("fnhw->f", d_cm)  # (F,)
    qh, qw = kh - 1 - p, kw - 1 - p
    full_conv = stride == 1 and qh >= 0 and qw >= 0  # dx = dout (*) flipped kernel, padding k - 1 - p
    dbuf = None
    if geo.flat:
        # dout laid out like the forward's output matrix (F, N Hs Ws), zeros on the dropped positions.
        # The full convolution pads dout by (qh, qw); for "same" padding (q = p) that grid is the
        # forward's, and its buffer shifted by qh Ws + qw *is* that layout (a matrix with row
        # stride S): one padded copy serves dw and dx
        NL = N * geo.P
        if full_conv and qh == p and qw == p:
            dbuf, dg = _padded_buffer(dout, qh, qw, kh, kw)
            d_cols = xp.lib.stride_tricks.as_strided(dbuf[qh * dg.Ws + qw:], shape=(F, NL),
                                                     strides=(dg.S * dbuf.itemsize, dbuf.itemsize))
        else:
            d_cols = xp.zeros((F, N, geo.Hs, geo.Ws), dtype=dout.dtype)
            d_cols[:, :, :Ho, :Wo] = d_cm
            d_cols = d_cols.reshape(F, NL)
    else:
        d_cols = xp.ascontiguousarray(d_cm).reshape(F, N * Ho * Wo)  # a view when dout is channel-major
    # dw = sum over chunks of cols @ dout_chunk.T: (C kh kw, F), the order BLAS runs fastest here
    chunks, size = _chunks(geo, N, C * kh * kw)

    ws = xp.empty(C * kh * kw * size, dtype=dout.dtype)
    dwt = xp.zeros((C * kh * kw, F), dtype=dout.dtype)
    tmp = xp.empty_like(dwt)
    for c0, c1 in chunks:
        xp.matmul(_cols(geo, c0, c1, ws), d_cols[:, c0:c1].T, out=tmp)
        dwt += tmp
    grads["weight"] = dwt.T.reshape(w.shape)  # (F, C, kh, kw)
    if not input_grad:
        return None, grads
    if full_conv:
        if dbuf is None:
            dbuf, dg = _padded_buffer(dout, qh, qw, kh, kw)
        wt = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, kh, kw)
        dx, g2 = _conv_core(dbuf, dg, wt, 1)  # (C, N P')
        return _nchw_view(dx, g2, N, H, W), grads
    # col2im: every column's gradient w2.T @ dout goes back to the window it came from; done per
    # chunk of images so that the chunk's (C kh kw, columns) gradient stays in the CPU caches
    d2 = d_cols if not geo.flat else xp.ascontiguousarray(d_cm).reshape(F, N * Ho * Wo)  # exact columns
    w2t = w.reshape(F, -1).T                                    # (C kh kw, F)
    dpad = xp.zeros((C, N, H + 2 * p, W + 2 * p), dtype=dout.dtype)
    P = Ho * Wo
    nb = max(1, size // P)

    ws = xp.empty(C * kh * kw * nb * P, dtype=dout.dtype)
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        dcols = ws[:C * kh * kw * (n1 - n0) * P].reshape(C * kh * kw, (n1 - n0) * P)
        xp.matmul(w2t, d2[:, n0 * P:n1 * P], out=dcols)         # (C kh kw, nb Ho Wo)
        dcols = dcols.reshape(C, kh, kw, n1 - n0, Ho, Wo)
        dchunk = dpad[:, n0:n1]                                 # (C, nb, Hp, Wp)
        for i in range(kh):
            for j in range(kw):
                dchunk[:, :, i:i + stride * (Ho - 1) + 1:stride,
                       j:j + stride * (Wo - 1) + 1:stride] += dcols[:, i, j]
    return dpad[:, :, p:p + H, p:p + W].transpose(1, 0, 2, 3), grads
