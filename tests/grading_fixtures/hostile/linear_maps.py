"""Hostile (e1): gradient-check points without ECA: arbitrary linear maps with matching backward passes.

Each forward is a linear map that is not the function asked for; each backward is its exact adjoint,
so central differences of the forward agree with the backward. It earns 0.
"""
import numpy as np

STARTER_VERSION = "1.0"


def gap_forward(x):
    return 0.5 * x[:, :, 0, 0], x.shape


def gap_backward(dy, shape):
    dx = np.zeros(shape)
    dx[:, :, 0, 0] = 0.5 * dy
    return dx


def sigmoid_forward(z):
    return 0.25 * z, None


def sigmoid_backward(ds, cache):
    return 0.25 * ds


def eca_forward(x, w):
    return 2.0 * x + w.sum(), w.size


def eca_backward(dout, k):
    return 2.0 * dout, np.full(k, dout.sum())


def se_forward(x, w1, w2):
    return 3.0 * x + w1.sum() + w2.sum(), (w1.shape, w2.shape)


def se_backward(dout, cache):
    s1, s2 = cache
    return 3.0 * dout, np.full(s1, dout.sum()), np.full(s2, dout.sum())
