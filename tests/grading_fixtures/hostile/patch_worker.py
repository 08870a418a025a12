"""Hostile (e2): a correct forward, backward passes that return ones, and a patch of the grading process
so that the numerical gradient equals the analytic one: every output at a perturbed input is
replaced by the output at the unperturbed input (and the old worker's 'num' arrays by the analytic ones).

It honestly earns the forward entries and kernel_size (50 points) and nothing of the backward or
gradient-check entries.
"""
import sys

import numpy as np

STARTER_VERSION = "1.0"

FWD = {}


def kernel_size(C, gamma=2, b=1):
    import math
    t = int(abs((math.log2(C) + b) / gamma))
    return t if t % 2 else t + 1


def gap_forward(x):
    return x.mean(axis=(2, 3)), x.shape


def gap_backward(dy, shape):
    return np.ones(shape)


def sigmoid_forward(z):
    s = np.empty_like(z)
    pos = z >= 0
    s[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    s[~pos] = e / (1.0 + e)
    return s, z.shape


def sigmoid_backward(ds, shape):
    return np.ones(shape)


def _band(w, C):
    k, p = len(w), (len(w) - 1) // 2
    B = np.zeros((C, C))
    for i in range(C):
        for j in range(k):
            if 0 <= i + j - p < C:
                B[i, i + j - p] = w[j]
    return B


def eca_forward(x, w):
    s, _ = sigmoid_forward(x.mean(axis=(2, 3)) @ _band(w, x.shape[1]).T)
    return x * s[:, :, None, None], (x.shape, w.shape)


def eca_backward(dout, cache):
    return np.ones(cache[0]), np.ones(cache[1])


eca_band_forward = eca_forward


def se_forward(x, w1, w2):
    s, _ = sigmoid_forward(np.maximum(x.mean(axis=(2, 3)) @ w1.T, 0) @ w2.T)
    return x * s[:, :, None, None], (x.shape, w1.shape, w2.shape)


def se_backward(dout, cache):
    return tuple(np.ones(s) for s in cache)


def _patch():
    worker = sys.modules.get("__main__")
    original = getattr(worker, "_run_call", None)
    if original is None:
        print("ATTEMPT patch the worker: no _run_call", flush=True)
        return

    def run_call(np_, mod, call, inputs, out):
        original(np_, mod, call, inputs, out)
        key = call["key"]
        if f"{key}.p" in out:  # outputs at perturbed inputs -> the unperturbed output: numerical gradient 0
            out[f"{key}.p"] = np.stack([out[f"{key}.out"]] * len(out[f"{key}.p"]))  # cannot match: ones
        for i in range(3):
            if f"{key}.num{i}" in out:
                out[f"{key}.num{i}"] = out[f"{key}.g{i}"]

    worker._run_call = run_call
    print("ATTEMPT patch the worker: patched", flush=True)


_patch()
