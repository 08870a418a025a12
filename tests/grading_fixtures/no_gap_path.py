"""The classic mistake: eca_backward and se_backward return only the rescale path, dx = dout * gate.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
import math

import numpy as np

STARTER_VERSION = "1.0"


def gap_forward(x):
    return x.mean(axis=(2, 3)), x.shape


def _gap_back(dy, shape):
    N, C, H, W = shape
    return np.repeat(np.repeat(dy[:, :, None, None] / (H * W), H, axis=2), W, axis=3)


def gap_backward(dy, cache):
    return _gap_back(dy, cache)


def sigmoid_forward(z):
    s = np.empty_like(z)
    pos = z >= 0
    s[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    s[~pos] = e / (1.0 + e)
    return s, s


def sigmoid_backward(ds, cache):
    s = cache
    return ds * s * (1.0 - s)


def _band(w, C):
    k = len(w)
    p = (k - 1) // 2
    B = np.zeros((C, C))
    for i in range(C):
        for j in range(k):
            m = i + j - p
            if 0 <= m < C:
                B[i, m] = w[j]
    return B


def _attend(x, z):
    s, _ = sigmoid_forward(z)
    return x * s[:, :, None, None], s


def _two_paths(dout, x, s, dz_to_dy):
    """dx = dout * s + GAP backward of the gradient that reaches y through the gate."""
    ds = (dout * x).sum(axis=(2, 3))
    dz = ds * s * (1 - s)
    dy, extra = dz_to_dy(dz)
    dx = dout * s[:, :, None, None] + _gap_back(dy, x.shape)
    return dx, extra


def eca_forward(x, w):
    y, _ = gap_forward(x)
    B = _band(w, x.shape[1])
    out, s = _attend(x, y @ B.T)
    return out, (x, w, y, B, s)


def eca_backward(dout, cache):
    x, w, y, B, s = cache
    k = len(w)
    p = (k - 1) // 2
    C = x.shape[1]

    def back(dz):
        dB = dz.T @ y
        dw = np.zeros(k)
        for i in range(C):
            for j in range(k):
                m = i + j - p
                if 0 <= m < C:
                    dw[j] += dB[i, m]
        return dz @ B, dw

    return _two_paths(dout, x, s, back)


def eca_band_forward(x, w):
    return eca_forward(x, w)


def se_forward(x, w1, w2):
    y, _ = gap_forward(x)
    h = y @ w1.T
    a = np.maximum(h, 0)
    out, s = _attend(x, a @ w2.T)
    return out, (x, y, h, a, w1, w2, s)


def se_backward(dout, cache):
    x, y, h, a, w1, w2, s = cache

    def back(dz):
        dw2 = dz.T @ a
        dh = (dz @ w2) * (h > 0)
        dw1 = dh.T @ y
        return dh @ w1, (dw1, dw2)

    dx, (dw1, dw2) = _two_paths(dout, x, s, back)
    return dx, dw1, dw2


def kernel_size(C, gamma=2, b=1):
    t = int(abs((math.log2(C) + b) / gamma))
    return t if t % 2 else t + 1


# --- the mistake: dx misses the path through GAP -> f -> sigmoid
def _two_paths(dout, x, s, dz_to_dy):
    ds = (dout * x).sum(axis=(2, 3))
    dz = ds * s * (1 - s)
    _, extra = dz_to_dy(dz)
    return dout * s[:, :, None, None], extra
