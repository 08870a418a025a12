"""2D convolution (a cross-correlation, like ``torch.nn.functional.conv2d``), forward and backward.

.. math::

    \\text{out}[n, f, h, w] = b[f] + \\sum_{c=0}^{C-1} \\sum_{i=0}^{k_h-1} \\sum_{j=0}^{k_w-1}
        w[f, c, i, j] \\; x_{pad}[n, c, s h + i, s w + j]

where ``x_pad`` is x with ``p`` zeros on each side of H and W, ``s`` the stride.

Read :func:`conv2d_forward_loop` and :func:`conv2d_backward_loop` at the bottom first: they are the
definition, one output element at a time. The vectorised version is im2col (CS231n's "fast" conv):

1. :func:`im2col` lays every receptive field out as one column of a matrix: shape
   (C kh kw, N Ho Wo). A strided view of the padded input presents the windows without copying;
   one reshape copies them into the matrix.
2. The convolution is then one matrix product: ``w.reshape(F, C kh kw) @ cols`` is (F, N Ho Wo).
3. Backward: ``dw = dout_matrix @ cols.T``, and ``dcols = w_matrix.T @ dout_matrix`` holds each
   window's share of dx; :func:`col2im` adds the windows back where they came from.

The engine (``eca_ref.engine.conv``) computes the same function with a memory layout tuned for the
CPU; tests/test_engine.py checks that the two agree.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import get_xp
from eca_ref.errors import InputError
from eca_ref.validation import check_float_array, check_int, check_same_dtype

__all__ = ["check_conv_args", "Conv2dCache", "conv2d_forward", "conv2d_backward", "conv2d_forward_loop",
           "conv2d_backward_loop", "conv_output_size", "im2col", "col2im"]


class Conv2dCache(NamedTuple):
    cols: object        # (C kh kw, N Ho Wo) the input's receptive fields, one per column
    w: object           # (F, C, kh, kw)
    has_bias: bool
    x_shape: tuple      # (N, C, H, W)
    stride: int
    padding: int


def conv_output_size(size: int, k: int, stride: int, padding: int) -> int:
    """floor((size + 2 padding - k) / stride) + 1, as PyTorch's Conv2d documents."""
    return (size + 2 * padding - k) // stride + 1


def check_conv_args(x, w, b, stride, padding, check_finite):
    check_float_array(x, "x", ndim=4, dims="(N, C, H, W)", check_finite=check_finite)
    check_float_array(w, "w", ndim=4, dims="(F, C, kh, kw)", check_finite=check_finite)
    check_same_dtype(x, w, "w")
    if w.shape[1] != x.shape[1]:
        raise InputError(f"w must have shape (F, C, kh, kw) with C = {x.shape[1]} (the channels of x), "
                         f"got {tuple(w.shape)}")
    if b is not None:
        check_float_array(b, "b", shape=(w.shape[0],), dims="(F,)", check_finite=check_finite)
        check_same_dtype(x, b, "b")
    stride = check_int(stride, "stride", min_value=1)
    padding = check_int(padding, "padding", min_value=0)
    H, W = x.shape[2:]
    kh, kw = w.shape[2:]
    if conv_output_size(H, kh, stride, padding) < 1 or conv_output_size(W, kw, stride, padding) < 1:
        raise InputError(f"the kernel ({kh}x{kw}) is larger than the padded input "
                         f"({H + 2 * padding}x{W + 2 * padding}); x has shape {tuple(x.shape)}, padding {padding}")
    return stride, padding


def im2col(x, kh: int, kw: int, stride: int, padding: int):
    """Every receptive field of x as a column.

    Shape:
        x: (N, C, H, W) -> cols: (C kh kw, N Ho Wo); row (c, i, j), column (n, h, w) holds
        x_pad[n, c, stride h + i, stride w + j].
    """
    xp = get_xp()
    N, C, H, W = x.shape
    Ho = conv_output_size(H, kh, stride, padding)
    Wo = conv_output_size(W, kw, stride, padding)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))   # (N, C, Hp, Wp)
    sn, sc, sh, sw = x_pad.strides
    # a view (no copy): windows[c, i, j, n, h, w] = x_pad[n, c, stride h + i, stride w + j]
    windows = xp.lib.stride_tricks.as_strided(
        x_pad, shape=(C, kh, kw, N, Ho, Wo), strides=(sc, sh, sw, sn, stride * sh, stride * sw))
    return windows.reshape(C * kh * kw, N * Ho * Wo)                               # the one copy


def col2im(dcols, x_shape: tuple, kh: int, kw: int, stride: int, padding: int):
    """The adjoint of :func:`im2col`: add each column's values back onto the window it came from.

    Shape:
        dcols: (C kh kw, N Ho Wo) -> dx: (N, C, H, W)
    """
    xp = get_xp()
    N, C, H, W = x_shape
    Ho = conv_output_size(H, kh, stride, padding)
    Wo = conv_output_size(W, kw, stride, padding)
    d = dcols.reshape(C, kh, kw, N, Ho, Wo).transpose(3, 0, 1, 2, 4, 5)             # (N, C, kh, kw, Ho, Wo)
    dx_pad = xp.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=dcols.dtype)
    for i in range(kh):              # kernel offset (i, j) touches rows i, i + s, ... and columns j, j + s, ...
        for j in range(kw):
            dx_pad[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] += d[:, :, i, j]
    return dx_pad[:, :, padding:padding + H, padding:padding + W]


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
    stride, padding = check_conv_args(x, w, b, stride, padding, check_finite)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    Ho = conv_output_size(H, kh, stride, padding)
    Wo = conv_output_size(W, kw, stride, padding)
    cols = im2col(x, kh, kw, stride, padding)                  # (C kh kw, N Ho Wo)
    out = w.reshape(F, C * kh * kw) @ cols                     # (F, N Ho Wo)
    if b is not None:
        out += b[:, None]
    out = out.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3)      # (N, F, Ho, Wo)
    return out, Conv2dCache(cols, w, b is not None, tuple(x.shape), stride, padding)


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
    cols, w = cache.cols, cache.w
    N, C, H, W = cache.x_shape
    F, _, kh, kw = w.shape
    Ho = conv_output_size(H, kh, cache.stride, cache.padding)
    Wo = conv_output_size(W, kw, cache.stride, cache.padding)
    check_float_array(dout, "dout", shape=(N, F, Ho, Wo), dims="(N, F, Ho, Wo)", check_finite=False)
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, N * Ho * Wo)   # (F, N Ho Wo), columns as in cols
    grads = {"weight": (dout_mat @ cols.T).reshape(w.shape)}       # (F, C, kh, kw)
    if cache.has_bias:
        grads["bias"] = dout_mat.sum(axis=1)                        # (F,)
    if not input_grad:
        return None, grads
    dcols = w.reshape(F, C * kh * kw).T @ dout_mat                  # (C kh kw, N Ho Wo)
    return col2im(dcols, cache.x_shape, kh, kw, cache.stride, cache.padding), grads


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
