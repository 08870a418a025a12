"""The grader's answers: the student interface (starter 1.0) built on eca_ref's own functions.

Every function here has the signature a student implements in the starter
(``eca_ref/grading/starter_template.py``) and is a thin wrapper over the
reference: GAP and the sigmoid from :mod:`eca_ref.functional`, ECA, ECA-band
and SE from :data:`eca_ref.VARIANTS`, the kernel-size rule from
:func:`eca_ref.kernel_size`. It runs only in the grader's own process, after
the submission's process has ended; the submission never sees it.

The ``*_wrong`` helpers compute the answers of typical mistakes, so that the
grader can name the mistake in its feedback.
"""
from __future__ import annotations

import math

import numpy

from eca_ref.attention import VARIANTS
from eca_ref.attention import kernel_size as _kernel_size
from eca_ref.backend import asarray, asnumpy
from eca_ref.functional import activations, pooling


def _variant(name):
    return VARIANTS[name]


# ----------------------------------------------------------------- the student interface
def gap_forward(x):
    """(N, C, H, W) -> (y (N, C), cache)."""
    return pooling.gap_forward(x)


def gap_backward(dy, cache):
    """(N, C) -> dx (N, C, H, W)."""
    return pooling.gap_backward(dy, cache)


def sigmoid_forward(z):
    """Any shape -> (s, cache)."""
    return activations.sigmoid_forward(z)


def sigmoid_backward(ds, cache):
    """ds -> dz = ds * s * (1 - s)."""
    return activations.sigmoid_backward(ds, cache)


def eca_forward(x, w):
    """ECA, 1D-conv form: x (N, C, H, W), w (k,) -> (out (N, C, H, W), cache)."""
    return _variant("eca").forward(x, {"w": w})


def eca_backward(dout, cache):
    """-> (dx (N, C, H, W), dw (k,))."""
    dx, grads = _variant("eca").backward(dout, cache)
    return dx, grads["w"]


def eca_band_forward(x, w):
    """ECA, band-matrix form: same answers as eca_forward."""
    return _variant("eca-band").forward(x, {"w": w})


def se_forward(x, w1, w2):
    """SE without biases: w1 (C//r, C), w2 (C, C//r) -> (out, cache)."""
    return _variant("se").forward(x, {"w1": w1, "w2": w2})


def se_backward(dout, cache):
    """-> (dx, dw1, dw2)."""
    dx, grads = _variant("se").backward(dout, cache)
    return dx, grads["w1"], grads["w2"]


def kernel_size(C, gamma=2, b=1):
    """The authors' code rule: t = int(|(log2 C + b) / gamma|); k = t if t is odd else t + 1."""
    return int(_kernel_size(C, gamma=gamma, b=b))


# ----------------------------------------------------------------- typical mistakes, for feedback
def gate(variant: str, x, params):
    """The gate σ(f(GAP(x))), (N, C), of a registry variant ("eca" or "se"), on the host."""
    return asnumpy(_variant(variant).gate(asarray(x), {k: asarray(v) for k, v in params.items()}))


def eca_forward_circular(x, w):
    """ECA with circular padding (timm's CECA) instead of zero padding."""
    return asnumpy(_variant("ceca").forward(asarray(x), {"w": asarray(w)})[0])


def se_forward_no_relu(x, w1, w2):
    """SE with the ReLU left out: out = x * σ(w2 w1 y)."""
    y = x.mean(axis=(2, 3))  # (N, C); host (NumPy) arrays, like every input of the grader
    z = (y @ w1.T) @ w2.T  # (N, C)
    return x / (1.0 + numpy.exp(-z))[:, :, None, None]


def kernel_size_ties_down(C, gamma=2, b=1):
    """'Nearest odd' read with ties going down: t even -> t - 1 (never below 1)."""
    t = int(abs((math.log2(C) + b) / gamma))
    return t if t % 2 else max(1, t - 1)


def kernel_size_timm(C, gamma=2, b=1):
    """timm's EcaModule: the authors' rule with k floored at 3."""
    return max(3, kernel_size(C, gamma, b))
