"""SE and its variants (SE-Var1/2/3, SE-GC), and "none": the map f (logits z = f(y) from the pooled y) of each.

Each variant supplies a few small functions (everything else, GAP -> σ ->
rescale, is shared, see :mod:`eca_ref.attention.module`):

    f_forward(y, params)  -> (z, cache)     y, z: (N, C)
    f_backward(dz, cache) -> (dy, grads)    grads keyed like params
    f_loop(y, params)     -> z              plain loops, the version to read first
    shapes(C, hp)         -> {name: shape}  the parameters and their shapes
    fan_in(C, hp)         -> {name: fan_in} for PyTorch's default uniform init

and is declared right below them, with keywords: ``SE = Variant(name="se", ...)``.
Its parameter count is the sum over its shapes; the paper's closed forms
(2C²/r, C, C², C²/G, kC, k) are checked against it by ``eca-ref verify``.
The hyper-parameter rules (r, groups, k) are in :mod:`eca_ref.attention.hyperparams`;
ECA and its forms (ECA-NS, CECA, the band matrix) are in :mod:`eca_ref.attention.eca`.

Notation: y (N, C) descriptor, z (N, C) logits, p = (k - 1) // 2.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.attention.hyperparams import groups_hp, groups_hp_from_params, se_hp, se_hp_from_params
from eca_ref.attention.module import Variant
from eca_ref.backend import get_xp

# --------------------------------------------------------------------------- no attention
NONE = Variant(name="none", formula="x (no attention)", param_formula="0",
               description="vanilla: no attention module")


# --------------------------------------------------------------------------- SE
class SECache(NamedTuple):
    y: object      # (N, C)
    h: object      # (N, C//r) pre-activation
    a: object      # (N, C//r) after ReLU
    params: dict


def se_f_forward(y, params):
    """SE: z = W2 ReLU(W1 y [+ b1]) [+ b2]; W1 (C//r, C), W2 (C, C//r)."""
    xp = get_xp()
    h = y @ params["w1"].T  # (N, C//r)
    if "b1" in params:
        h = h + params["b1"]
    a = xp.maximum(h, 0)  # (N, C//r)
    z = a @ params["w2"].T  # (N, C)
    if "b2" in params:
        z = z + params["b2"]
    return z, SECache(y, h, a, params)


def se_f_backward(dz, cache: SECache):
    grads = {"w2": dz.T @ cache.a}  # (C, C//r)
    da = dz @ cache.params["w2"]  # (N, C//r)
    dh = da * (cache.h > 0)  # ReLU passes the gradient where h > 0
    grads["w1"] = dh.T @ cache.y  # (C//r, C)
    if "b1" in cache.params:
        grads["b1"] = dh.sum(axis=0)
        grads["b2"] = dz.sum(axis=0)
    dy = dh @ cache.params["w1"]  # (N, C)
    return dy, grads


def se_f_loop(y, params):
    xp = get_xp()
    N, C = y.shape
    w1, w2 = params["w1"], params["w2"]
    hidden = w1.shape[0]
    z = xp.zeros_like(y)
    for n in range(N):
        a = [0.0] * hidden
        for u in range(hidden):
            s = params["b1"][u] if "b1" in params else 0.0
            for c in range(C):
                s += w1[u, c] * y[n, c]
            a[u] = max(s, 0.0)
        for c in range(C):
            s = params["b2"][c] if "b2" in params else 0.0
            for u in range(hidden):
                s += w2[c, u] * a[u]
            z[n, c] = s
    return z


def se_shapes(C, hp):
    """w1 (C//r, C), w2 (C, C//r), and with bias=True b1 (C//r,), b2 (C,)."""
    h = hp["hidden"]
    shapes = {"w1": (h, C), "w2": (C, h)}
    if hp["bias"]:
        shapes.update(b1=(h,), b2=(C,))
    return shapes


def se_fan_in(C, hp):
    return {"w1": C, "w2": hp["hidden"], "b1": C, "b2": hp["hidden"]}


SE = Variant(name="se", formula="σ(W₂ ReLU(W₁ y))", param_formula="2C²/r",
             description="SE: two FC layers with reduction r", hp_defaults={"r": 16, "bias": False},
             hp_rule=se_hp, shapes=se_shapes, fan_in=se_fan_in, hp_from_params=se_hp_from_params,
             f_forward=se_f_forward, f_backward=se_f_backward, f_loop=se_f_loop)


# ---------------------------------------------------------------- SE-Var1/2/3
class LinearCache(NamedTuple):
    y: object
    params: dict


def identity_f_forward(y, params):
    """SE-Var1: z = y (no parameters)."""
    return y.copy(), LinearCache(y, params)


def identity_f_backward(dz, cache):
    return dz.copy(), {}


def identity_f_loop(y, params):
    return y.copy()


SE_VAR1 = Variant(name="se-var1", formula="σ(y)", param_formula="0",
                  description="SE-Var1: the pooled descriptor itself, no parameters",
                  f_forward=identity_f_forward, f_backward=identity_f_backward, f_loop=identity_f_loop)


def diagonal_f_forward(y, params):
    """SE-Var2: z = w ⊙ y, one weight per channel, w (C,)."""
    return params["w"] * y, LinearCache(y, params)


def diagonal_f_backward(dz, cache):
    return dz * cache.params["w"], {"w": (dz * cache.y).sum(axis=0)}


def diagonal_f_loop(y, params):
    xp = get_xp()
    z = xp.zeros_like(y)
    for n in range(y.shape[0]):
        for c in range(y.shape[1]):
            z[n, c] = params["w"][c] * y[n, c]
    return z


def diagonal_shapes(C, hp):
    return {"w": (C,)}


def diagonal_fan_in(C, hp):
    return {"w": 1}


SE_VAR2 = Variant(name="se-var2", formula="σ(w ⊙ y)", param_formula="C",
                  description="SE-Var2: one weight per channel (diagonal)",
                  shapes=diagonal_shapes, fan_in=diagonal_fan_in,
                  f_forward=diagonal_f_forward, f_backward=diagonal_f_backward, f_loop=diagonal_f_loop)


def full_f_forward(y, params):
    """SE-Var3: z = W y, a full C x C matrix."""
    return y @ params["W"].T, LinearCache(y, params)  # (N, C)


def full_f_backward(dz, cache):
    return dz @ cache.params["W"], {"W": dz.T @ cache.y}


def full_f_loop(y, params):
    xp = get_xp()
    N, C = y.shape
    z = xp.zeros_like(y)
    for n in range(N):
        for i in range(C):
            for j in range(C):
                z[n, i] += params["W"][i, j] * y[n, j]
    return z


def full_shapes(C, hp):
    return {"W": (C, C)}


def full_fan_in(C, hp):
    return {"W": C}


SE_VAR3 = Variant(name="se-var3", formula="σ(W y)", param_formula="C²",
                  description="SE-Var3: a full C x C matrix", shapes=full_shapes, fan_in=full_fan_in,
                  f_forward=full_f_forward, f_backward=full_f_backward, f_loop=full_f_loop)


# ---------------------------------------------------------------------- SE-GC
def grouped_f_forward(y, params):
    """SE-GC: block-diagonal W; group g maps its C/G channels by W[g] (C/G, C/G)."""
    xp = get_xp()
    W = params["W"]  # (G, C/G, C/G)
    G, Cg, _ = W.shape
    yg = y.reshape(y.shape[0], G, Cg)  # (N, G, C/G)
    z = xp.einsum("gij,ngj->ngi", W, yg)  # (N, G, C/G)
    return z.reshape(y.shape), LinearCache(y, params)


def grouped_f_backward(dz, cache):
    xp = get_xp()
    W = cache.params["W"]
    G, Cg, _ = W.shape
    N = dz.shape[0]
    dzg = dz.reshape(N, G, Cg)
    yg = cache.y.reshape(N, G, Cg)
    dW = xp.einsum("ngi,ngj->gij", dzg, yg)  # (G, C/G, C/G)
    dy = xp.einsum("gij,ngi->ngj", W, dzg).reshape(dz.shape)  # (N, C)
    return dy, {"W": dW}


def grouped_f_loop(y, params):
    xp = get_xp()
    W = params["W"]
    G, Cg, _ = W.shape
    z = xp.zeros_like(y)
    for n in range(y.shape[0]):
        for g in range(G):
            for i in range(Cg):
                for j in range(Cg):
                    z[n, g * Cg + i] += W[g, i, j] * y[n, g * Cg + j]
    return z


def grouped_shapes(C, hp):
    """W (G, C/G, C/G): one C/G x C/G block per group."""
    G = hp["groups"]
    return {"W": (G, C // G, C // G)}


def grouped_fan_in(C, hp):
    return {"W": C // hp["groups"]}


SE_GC = Variant(name="se-gc", formula="σ(GC_G(y))", param_formula="C²/G",
                description="SE-GC: block-diagonal W with G groups", hp_defaults={"groups": 16},
                hp_rule=groups_hp, shapes=grouped_shapes, fan_in=grouped_fan_in,
                hp_from_params=groups_hp_from_params,
                f_forward=grouped_f_forward, f_backward=grouped_f_backward, f_loop=grouped_f_loop)
