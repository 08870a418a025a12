"""2D convolution (a cross-correlation, like ``torch.nn.functional.conv2d``), forward and backward.

.. math::

    \\text{out}[n, f, h, w] = b[f] + \\sum_{c=0}^{C-1} \\sum_{i=0}^{k_h-1} \\sum_{j=0}^{k_w-1}
        w[f, c, i, j] \\; x_{pad}[n, c, s h + i, s w + j]

where ``x_pad`` is x with ``p`` zeros on each side of H and W, ``s`` the stride.

How the vectorised version works (im2col, one matrix product):

1. x is copied once into a zero-padded buffer in *channel-major* order (C, N, Hp, Wp).
2. A strided view of that buffer presents every receptive field as a column, shape
   (C, kh, kw, N, Ho, Wo), without copying; one copy makes it the (C kh kw, N Ho Wo) matrix
   ``cols``. For stride 1 the view runs over the flattened padded buffer, so each of its rows is a
   single contiguous slice (a fast copy); the columns that fall on padding are computed and dropped.
3. ``w.reshape(F, C kh kw) @ cols`` is the whole convolution: (F, N Ho Wo).
4. The result is returned as an (N, F, Ho, Wo) array. It is a transposed *view* of the
   channel-major product, so no copy is made; the values are NCHW (index them as usual), only the
   memory order is channel-major, which the next layer's reductions and im2col prefer.

Backward: ``dw = dout @ cols.T``; for stride 1, ``dx`` is the convolution of ``dout`` with the
flipped, transposed kernel (a "full" convolution, padding k - 1 - p), which reuses steps 1-3;
for stride > 1, ``dx`` scatters ``w.T @ dout`` back over the receptive fields (col2im).
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_float_array, check_int

__all__ = ["Conv2dCache", "conv2d_forward", "conv2d_backward", "conv2d_forward_loop",
           "conv2d_backward_loop", "conv_output_size"]


class Conv2dCache(NamedTuple):
    xbuf: object        # flat zero-padded copy of x, (N C Hp Wp + slack,)
    w: object           # (F, C, kh, kw)
    has_bias: bool
    x_shape: tuple      # (N, C, H, W)
    stride: int
    padding: int


# im2col works on chunks of images whose column matrix stays small enough for the CPU caches
# (the whole batch's matrix would be 9x the input, and filling fresh memory costs page faults)
CHUNK_COLUMNS = 4096


def conv_output_size(size: int, k: int, stride: int, padding: int) -> int:
    """floor((size + 2 padding - k) / stride) + 1, as PyTorch's Conv2d documents."""
    return (size + 2 * padding - k) // stride + 1


def _check_conv_args(x, w, b, stride, padding, check_finite):
    check_float_array(x, "x", ndim=4, dims="(N, C, H, W)", check_finite=check_finite)
    check_float_array(w, "w", ndim=4, dims="(F, C, kh, kw)", check_finite=check_finite)
    if w.dtype != x.dtype:
        raise InputTypeError(f"w must have the dtype of x ({x.dtype}), got {w.dtype}")
    if w.shape[1] != x.shape[1]:
        raise InputError(f"w must have shape (F, C, kh, kw) with C = {x.shape[1]} (the channels of x), "
                         f"got {tuple(w.shape)}")
    if b is not None:
        check_float_array(b, "b", shape=(w.shape[0],), dims="(F,)", check_finite=check_finite)
        if b.dtype != x.dtype:
            raise InputTypeError(f"b must have the dtype of x ({x.dtype}), got {b.dtype}")
    stride = check_int(stride, "stride", min_value=1)
    padding = check_int(padding, "padding", min_value=0)
    H, W = x.shape[2:]
    kh, kw = w.shape[2:]
    if conv_output_size(H, kh, stride, padding) < 1 or conv_output_size(W, kw, stride, padding) < 1:
        raise InputError(f"the kernel ({kh}x{kw}) is larger than the padded input "
                         f"({H + 2 * padding}x{W + 2 * padding}); x has shape {tuple(x.shape)}, padding {padding}")
    return stride, padding


def _padded_buffer(x, pad_h: int, pad_w: int, kh: int, kw: int):
    """x (N, C, H, W), any memory order -> a flat zero-padded copy (N C Hp Wp + slack,).

    The slack lets the stride-1 im2col view read (kh - 1) rows and (kw - 1) columns past the
    last plane; those reads only feed output positions that are dropped.
    """
    xp = get_xp()
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * pad_h, W + 2 * pad_w
    buf = xp.zeros(N * C * Hp * Wp + (kh - 1) * Wp + kw, dtype=x.dtype)
    buf[:N * C * Hp * Wp].reshape(N, C, Hp, Wp)[:, :, pad_h:pad_h + H, pad_w:pad_w + W] = x
    return buf


class _Geometry(NamedTuple):
    view: object   # (N, C, kh, kw, P) or (N, C, kh, kw, Ho, Wo) strided view of the buffer: every column
    P: int         # columns per image: Hp Wp (stride 1, dropped positions included) or Ho Wo
    flat: bool     # stride-1 layout (columns run over all padded positions)
    Hp: int
    Wp: int


def _im2col_view(buf, N, C, Hp, Wp, kh, kw, stride):
    xp = get_xp()
    as_strided = xp.lib.stride_tricks.as_strided
    isz = buf.itemsize
    L1 = Hp * Wp
    Ho, Wo = (Hp - kh) // stride + 1, (Wp - kw) // stride + 1
    if stride == 1:  # each row of an image's column matrix is one contiguous slice of the buffer
        view = as_strided(buf, shape=(N, C, kh, kw, L1), strides=(C * L1 * isz, L1 * isz, Wp * isz, isz, isz))
        return _Geometry(view, L1, True, Hp, Wp)
    view = as_strided(buf, shape=(N, C, kh, kw, Ho, Wo),
                      strides=(C * L1 * isz, L1 * isz, Wp * isz, isz, stride * Wp * isz, stride * isz))
    return _Geometry(view, Ho * Wo, False, Hp, Wp)


def _chunks(N, P):
    nb = max(1, min(N, CHUNK_COLUMNS // P))
    return [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)], nb


def _cols(geo, n0, n1, ws):
    """Copy the columns of images n0..n1-1 into the workspace: (C kh kw, (n1 - n0) P)."""
    nb = n1 - n0
    _, C, kh, kw = geo.view.shape[:4]
    cols = ws[:, :nb * geo.P]
    if nb == 1:
        cols.reshape(geo.view.shape[1:]).__setitem__(Ellipsis, geo.view[n0])
    else:  # (C, kh, kw, nb, P) <- the chunk's columns, images side by side
        src = geo.view[n0:n1].reshape(nb, C, kh, kw, -1).transpose(1, 2, 3, 0, 4) if geo.flat \
            else geo.view[n0:n1].transpose(1, 2, 3, 0, 4, 5)
        cols.reshape(src.shape)[...] = src
    return cols


def _conv_core(buf, N, C, Hp, Wp, w, stride):
    """out[n] = w2 @ cols(n) for every image: (N, F, P) -- the convolution over a padded buffer."""
    xp = get_xp()
    F, _, kh, kw = w.shape
    geo = _im2col_view(buf, N, C, Hp, Wp, kh, kw, stride)
    w2 = w.reshape(F, C * kh * kw)
    out = xp.empty((N, F, geo.P), dtype=buf.dtype)
    chunks, nb = _chunks(N, geo.P)
    ws = xp.empty((C * kh * kw, nb * geo.P), dtype=buf.dtype)
    for n0, n1 in chunks:
        cols = _cols(geo, n0, n1, ws)
        if n1 - n0 == 1:
            xp.matmul(w2, cols, out=out[n0])
        else:
            out[n0:n1] = (w2 @ cols).reshape(F, n1 - n0, geo.P).transpose(1, 0, 2)
    return out, geo


def _crop(out, geo, Ho, Wo):
    """(N, F, P) product -> (N, F, Ho, Wo) (a view: the stride-1 layout drops its padded positions)."""
    N, F = out.shape[:2]
    if geo.flat:
        return out.reshape(N, F, geo.Hp, geo.Wp)[:, :, :Ho, :Wo]
    return out.reshape(N, F, Ho, Wo)


def conv2d_forward(x, w, b=None, *, stride: int = 1, padding: int = 0, check_finite: bool = True):
    """2D convolution (cross-correlation), NCHW, PyTorch's weight layout.

    out[n, f, h, w] = b[f] + sum_{c, i, j} w[f, c, i, j] x_pad[n, c, stride h + i, stride w + j]

    Args:
        x: input, float32 or float64.
        w: weight (PyTorch's ``Conv2d.weight``), the dtype of x.
        b: optional bias (``Conv2d.bias``), or None.
        stride: step of the window, >= 1.
        padding: zeros added on each side of H and W, >= 0.
        check_finite: reject NaN/inf in the inputs (one pass over the data; off in training).

    Shape:
        x: (N, C, H, W), w: (F, C, kh, kw), b: (F,)
        out: (N, F, Ho, Wo) with Ho = floor((H + 2 padding - kh) / stride) + 1 (Wo likewise).
        For stride 1 the result is a view whose rows are Wo of every Wo + 2 padding stored values.

    Weight initialisation (done by the model, not here): Kaiming normal, fan_out, for ReLU nets.

    Returns:
        (out, cache)

    Example:
        >>> import numpy as np
        >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
        >>> out, _ = conv2d_forward(x, np.ones((1, 1, 3, 3)), padding=1)
        >>> out.shape, float(out[0, 0, 1, 1])
        ((1, 1, 4, 4), 45.0)
    """
    stride, padding = _check_conv_args(x, w, b, stride, padding, check_finite)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    buf = _padded_buffer(x, padding, padding, kh, kw)
    out, geo = _conv_core(buf, N, C, H + 2 * padding, W + 2 * padding, w, stride)  # (N, F, P)
    if b is not None:
        out += b[None, :, None]
    out = _crop(out, geo, conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding))
    return out, Conv2dCache(buf, w, b is not None, tuple(x.shape), stride, padding)


def conv2d_backward(dout, cache: Conv2dCache, *, input_grad: bool = True):
    """Gradients of :func:`conv2d_forward`.

    Args:
        dout: upstream gradient.
        cache: from the forward pass.
        input_grad: compute dx (False skips it and returns None, e.g. for a network's first layer).

    Shape:
        dout: (N, F, Ho, Wo) -> dx: (N, C, H, W); grads["weight"]: (F, C, kh, kw),
        grads["bias"]: (F,) when the forward had a bias.

    Returns:
        (dx, grads)
    """
    xp = get_xp()
    w, stride, p = cache.w, cache.stride, cache.padding
    N, C, H, W = cache.x_shape
    F, _, kh, kw = w.shape
    Ho, Wo = conv_output_size(H, kh, stride, p), conv_output_size(W, kw, stride, p)
    check_float_array(dout, "dout", shape=(N, F, Ho, Wo), dims="(N, F, Ho, Wo)", check_finite=False)
    Hp, Wp = H + 2 * p, W + 2 * p
    geo = _im2col_view(cache.xbuf, N, C, Hp, Wp, kh, kw, stride)
    grads = {}
    if cache.has_bias:
        grads["bias"] = dout.sum(axis=(0, 2, 3))  # (F,)
    full_conv = stride == 1 and kh == kw and p <= kh - 1  # dx = dout (*) flipped kernel, padding k - 1 - p
    if geo.flat:
        # dout laid out like the forward's columns (zeros on dropped positions): the full-conv buffer
        # holds dout at offset (q, q) of a (Ho + 2q) x (Wo + 2q) grid; shifted by q (Wp + 1) it is the
        # forward layout when q = k - 1 - p equals p, i.e. "same" padding
        q = kh - 1 - p
        if full_conv and Ho + 2 * q == Hp and Wo + 2 * q == Wp:
            dbuf = _padded_buffer(dout, q, q, kh, kw)
            d_cols = dbuf[q * (Wp + 1):q * (Wp + 1) + N * F * Hp * Wp].reshape(N, F, Hp * Wp)
        else:
            dbuf = None
            d_cols = xp.zeros((N, F, Hp, Wp), dtype=dout.dtype)
            d_cols[:, :, :Ho, :Wo] = dout
            d_cols = d_cols.reshape(N, F, Hp * Wp)
    else:
        dbuf = None
        d_cols = xp.ascontiguousarray(dout).reshape(N, F, Ho * Wo)
    # dw = sum over images of dout(n) @ cols(n).T, computed as cols @ dout.T (the faster order for BLAS)
    chunks, nb = _chunks(N, geo.P)
    ws = xp.empty((C * kh * kw, nb * geo.P), dtype=dout.dtype)
    dwt = xp.zeros((C * kh * kw, F), dtype=dout.dtype)
    tmp = xp.empty_like(dwt)
    for n0, n1 in chunks:
        cols = _cols(geo, n0, n1, ws)
        if n1 - n0 == 1:
            dn = d_cols[n0]  # (F, P)
        else:
            dn = d_cols[n0:n1].transpose(1, 0, 2).reshape(F, -1)  # (F, nb P)
        xp.matmul(cols, dn.T, out=tmp)
        dwt += tmp
    grads["weight"] = dwt.T.reshape(w.shape)  # (F, C, kh, kw)
    if not input_grad:
        return None, grads
    if full_conv:
        q = kh - 1 - p
        if dbuf is None:
            dbuf = _padded_buffer(dout, q, q, kh, kw)
        wt = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, kh, kw)
        dx, g2 = _conv_core(dbuf, N, F, Ho + 2 * q, Wo + 2 * q, wt, 1)  # (N, C, P')
        return _crop(dx, g2, H, W), grads
    # col2im: every column's gradient w2.T @ dout goes back to the window it came from
    dcols = xp.matmul(w.reshape(F, -1).T, xp.ascontiguousarray(dout).reshape(N, F, Ho * Wo))  # (N, C kh kw, Ho Wo)
    dcols = dcols.reshape(N, C, kh, kw, Ho, Wo)
    dpad = xp.zeros((N, C, Hp, Wp), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dpad[:, :, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride] += dcols[:, :, i, j]
    return dpad[:, :, p:p + H, p:p + W], grads


# ---------------------------------------------------------------- plain loops (read these first)

def conv2d_forward_loop(x, w, b=None, *, stride: int = 1, padding: int = 0):
    """The definition, one output element at a time (small shapes only)."""
    xp = get_xp()
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    Ho = conv_output_size(H, kh, stride, padding)
    Wo = conv_output_size(W, kw, stride, padding)
    xpad = xp.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    xpad[:, :, padding:padding + H, padding:padding + W] = x
    out = xp.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for h in range(Ho):
                for v in range(Wo):
                    window = xpad[n, :, stride * h:stride * h + kh, stride * v:stride * v + kw]  # (C, kh, kw)
                    out[n, f, h, v] = (window * w[f]).sum() + (b[f] if b is not None else 0.0)
    return out


def conv2d_backward_loop(dout, x, w, *, stride: int = 1, padding: int = 0):
    """Gradients by the chain rule, one output element at a time: (dx, dw, db)."""
    xp = get_xp()
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    Ho, Wo = dout.shape[2:]
    xpad = xp.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    xpad[:, :, padding:padding + H, padding:padding + W] = x
    dxpad = xp.zeros_like(xpad)
    dw = xp.zeros_like(w)
    db = xp.zeros(F, dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for h in range(Ho):
                for v in range(Wo):
                    g = dout[n, f, h, v]
                    hs, vs = stride * h, stride * v
                    dw[f] += g * xpad[n, :, hs:hs + kh, vs:vs + kw]
                    dxpad[n, :, hs:hs + kh, vs:vs + kw] += g * w[f]
                    db[f] += g
    return dxpad[:, :, padding:padding + H, padding:padding + W].copy(), dw, db
