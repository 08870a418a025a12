"""ECA and its other forms: the map f of ECA, ECA-NS, CECA and ECA-band, and their declarations.

ECA's f is a 1D cross-correlation over the channel axis (the paper's Eq. 9,
PyTorch's Conv1d convention, zero padding p = (k - 1) / 2):

    z_i = Σ_{j=0}^{k-1} w_j y_{i+j-p}         y_m = 0 outside 0..C-1

ECA-NS gives each channel its own k weights (Eq. 7), CECA pads circularly,
and ECA-band computes ECA as z = B y with the C x C band matrix B (Eq. 8).
Each variant supplies f_forward, f_backward, f_loop, shapes and fan_in as in
:mod:`eca_ref.attention.variants`, and is declared right below them.

Notation: y (N, C) descriptor, z (N, C) logits, p = (k - 1) // 2.
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.attention.hyperparams import kernel_hp, per_channel_kernel_hp_from_params, shared_kernel_hp_from_params
from eca_ref.attention.kernel import band_grad_to_kernel, band_matrix
from eca_ref.attention.module import Variant
from eca_ref.backend import get_xp


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


def eca_f_loop(y, params):
    return conv_f_loop(y, params["w"])


def ceca_f_loop(y, params):
    return conv_f_loop(y, params["w"], circular=True)


def ecans_f_loop(y, params):
    return conv_f_loop(y, params["W"])


def shared_kernel_shapes(C, hp):
    """w (k,): one kernel shared by all channels (ECA, ECA-band, CECA)."""
    return {"w": (hp["k"],)}


def shared_kernel_fan_in(C, hp):
    return {"w": hp["k"]}


def per_channel_kernel_shapes(C, hp):
    """W (C, k): k free weights per channel (ECA-NS)."""
    return {"W": (C, hp["k"])}


def per_channel_kernel_fan_in(C, hp):
    return {"W": hp["k"]}


ECA_NS = Variant(name="eca-ns", formula="σ(Σⱼ wᵢʲ yᵢʲ)", param_formula="kC",
                 description="ECA-NS: band matrix, k free weights per channel", hp_defaults={"k": None},
                 hp_rule=kernel_hp, shapes=per_channel_kernel_shapes, fan_in=per_channel_kernel_fan_in,
                 hp_from_params=per_channel_kernel_hp_from_params,
                 f_forward=ecans_f_forward, f_backward=ecans_f_backward, f_loop=ecans_f_loop)
ECA = Variant(name="eca", formula="σ(C1D_k(y))", param_formula="k",
              description="ECA: one k-tap 1D convolution over channels", hp_defaults={"k": None},
              hp_rule=kernel_hp, shapes=shared_kernel_shapes, fan_in=shared_kernel_fan_in,
              hp_from_params=shared_kernel_hp_from_params,
              f_forward=eca_f_forward, f_backward=shared_conv_f_backward, f_loop=eca_f_loop)
CECA = Variant(name="ceca", formula="σ(CC1D_k(y))", param_formula="k",
               description="CECA: the 1D convolution with circular padding", hp_defaults={"k": None},
               hp_rule=kernel_hp, shapes=shared_kernel_shapes, fan_in=shared_kernel_fan_in,
               hp_from_params=shared_kernel_hp_from_params,
               f_forward=ceca_f_forward, f_backward=shared_conv_f_backward, f_loop=ceca_f_loop)


# ------------------------------------------------------ ECA as a band matrix
class BandCache(NamedTuple):
    y: object
    B: object  # (C, C)
    k: int


def band_f_forward(y, params):
    """ECA in matrix form: z = B y with B = band_matrix(w, C) (Eq. 8 with shared weights)."""
    B = band_matrix(params["w"], y.shape[1])  # (C, C)
    return y @ B.T, BandCache(y, B, params["w"].shape[0])


def band_f_backward(dz, cache: BandCache):
    """dB = dz^T y (C x C), then dw by summing dB along the k diagonals."""
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


ECA_BAND = Variant(name="eca-band", formula="σ(B_k(w) y)", param_formula="k",
                   description="ECA as a C x C band matrix with k shared weights", hp_defaults={"k": None},
                   hp_rule=kernel_hp, shapes=shared_kernel_shapes, fan_in=shared_kernel_fan_in,
                   hp_from_params=shared_kernel_hp_from_params,
                   f_forward=band_f_forward, f_backward=band_f_backward, f_loop=band_f_loop)
