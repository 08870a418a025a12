"""The map f of every attention variant: logits z = f(y) from the pooled descriptor y.

Each variant supplies four small functions (everything else, GAP -> σ ->
rescale, is shared, see :mod:`eca_ref.attention.module`):

    f_forward(y, params)  -> (z, cache)     y, z: (N, C)
    f_backward(dz, cache) -> (dy, grads)    grads keyed like params
    f_loop(y, params)     -> z              plain loops, the version to read first
    shapes(C, **hp)       -> {name: shape}  the parameters and their shapes

Notation: y (N, C) descriptor, z (N, C) logits, p = (k - 1) // 2.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import get_xp


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


# ------------------------------------------------- ECA, ECA-NS, CECA: the 1D conv
class ConvCache(NamedTuple):
    y: object
    w: object        # (k,) shared or (C, k) per channel
    circular: bool


def _shift(a, d, circular):
    """a shifted along channels so that out[:, i] = a[:, i + d] (0 outside, or wrapped).

    Tap j of the cross-correlation reads y at i + j - p: ``_shift(y, j - p)``.
    """
    xp = get_xp()
    if circular:
        return xp.roll(a, -d, axis=1)  # roll(a, s)[:, i] = a[:, i - s]
    C = a.shape[1]
    out = xp.zeros_like(a)
    if abs(d) < C:
        if d >= 0:
            out[:, : C - d] = a[:, d:]
        else:
            out[:, -d:] = a[:, : C + d]
    return out


def conv_f_forward(y, w, circular=False):
    """z_i = Σ_j w_j y_{i+j-p}: the k taps of the cross-correlation, vectorised over N and C.

    w is (k,) (ECA, CECA: shared by all channels) or (C, k) (ECA-NS: each channel its own row).
    """
    k = w.shape[-1]
    p = (k - 1) // 2
    z = None
    for j in range(k):
        wj = w[j] if w.ndim == 1 else w[:, j]  # scalar, or (C,)
        term = wj * _shift(y, j - p, circular)  # (N, C)
        z = term if z is None else z + term
    return z, ConvCache(y, w, circular)


def conv_f_backward(dz, cache: ConvCache):
    """dy_m = Σ_j w_j dz_{m-(j-p)};  dw_j = Σ_{n,i} dz_{n,i} y_{n,i+j-p} (ECA-NS: no sum over i)."""
    xp = get_xp()
    y, w, circular = cache
    k = w.shape[-1]
    p = (k - 1) // 2
    dy = xp.zeros_like(y)
    dw = xp.zeros_like(w)
    for j in range(k):
        d = j - p
        y_shift = _shift(y, d, circular)  # (N, C)
        if w.ndim == 1:
            dw[j] = (dz * y_shift).sum()
            dy += w[j] * _shift(dz, -d, circular)
        else:
            dw[:, j] = (dz * y_shift).sum(axis=0)
            dy += _shift(w[:, j] * dz, -d, circular)
    return dy, dw


def conv_f_loop(y, w, circular=False):
    """The same cross-correlation with every index written out."""
    xp = get_xp()
    N, C = y.shape
    k = w.shape[-1]
    p = (k - 1) // 2
    z = xp.zeros_like(y)
    for n in range(N):
        for i in range(C):
            for j in range(k):
                m = i + j - p
                if circular:
                    m %= C
                elif not 0 <= m < C:
                    continue  # zero padding
                wij = w[j] if w.ndim == 1 else w[i, j]
                z[n, i] += wij * y[n, m]
    return z


def eca_f_forward(y, params):
    """ECA: z = C1D_k(y), one k-tap kernel shared by all channels (Eq. 9)."""
    return conv_f_forward(y, params["w"])


def ceca_f_forward(y, params):
    """CECA: the same 1D convolution with circular padding."""
    return conv_f_forward(y, params["w"], circular=True)


def ecans_f_forward(y, params):
    """ECA-NS: z_i = Σ_j W[i, j] y_{i+j-p}, k free weights per channel (Eq. 7)."""
    return conv_f_forward(y, params["W"])


def shared_conv_f_backward(dz, cache):
    dy, dw = conv_f_backward(dz, cache)
    return dy, {"w": dw}


def ecans_f_backward(dz, cache):
    dy, dW = conv_f_backward(dz, cache)
    return dy, {"W": dW}


# ------------------------------------------------------ ECA as a band matrix
class BandCache(NamedTuple):
    y: object
    B: object  # (C, C)
    k: int


def band_f_forward(y, params):
    """ECA in matrix form: z = B y with B = band_matrix(w, C) (Eq. 8 with shared weights)."""
    from eca_ref.attention.kernel import band_matrix

    B = band_matrix(params["w"], y.shape[1])  # (C, C)
    return y @ B.T, BandCache(y, B, params["w"].shape[0])


def band_f_backward(dz, cache: BandCache):
    """dB = dz^T y (C x C), then dw by summing dB along the k diagonals."""
    from eca_ref.attention.kernel import band_grad_to_kernel

    dB = dz.T @ cache.y  # (C, C)
    return dz @ cache.B, {"w": band_grad_to_kernel(dB, cache.k)}


def band_f_loop(y, params):
    """Build B entry by entry, then multiply row by row."""
    xp = get_xp()
    w = params["w"]
    N, C = y.shape
    k = w.shape[0]
    p = (k - 1) // 2
    B = xp.zeros((C, C), dtype=y.dtype)
    for i in range(C):
        for j in range(k):
            if 0 <= i + j - p < C:
                B[i, i + j - p] = w[j]
    z = xp.zeros_like(y)
    for n in range(N):
        for i in range(C):
            for m in range(C):
                z[n, i] += B[i, m] * y[n, m]
    return z
