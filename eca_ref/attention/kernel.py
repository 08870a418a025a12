"""The kernel size rule (the paper's Eq. 12) and the band matrix of ECA (Eq. 8-9).

Eq. 12:  k = ψ(C) = | log2(C)/γ + b/γ |_odd,  γ = 2, b = 1,

where |t|_odd is "the nearest odd number to t". The authors' code computes
``t = int(abs((log2(C) + b) / gamma)); k = t if t % 2 else t + 1``. The two
agree except where (log2(C) + b)/γ is an even integer and "nearest odd" is a
tie (C = 8, 128, 2048, 32768 for γ = 2, b = 1); the code rounds such ties up.
:func:`kernel_size` follows the code; :func:`kernel_size_info` shows both.

The band matrix: ECA's k shared weights w on the k central diagonals of a
C x C matrix B, so that ``B @ y`` is the 1D cross-correlation of y with w
under zero padding (k-1)/2, i.e.

    z_i = Σ_{j=0}^{k-1} w_j y_{i+j-p},   p = (k-1)/2,   y_m = 0 outside 0..C-1.

CECA pads circularly instead: the index i+j-p is taken modulo C.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_bool, check_float_array, check_int, check_kernel, check_positive_float


def _check_b(b) -> float:
    if isinstance(b, bool) or not isinstance(b, numbers.Real) or not math.isfinite(b):
        raise InputTypeError(f"b must be a finite number, got {b!r}")
    return float(b)


def kernel_size(C, gamma=2, b=1) -> int:
    """ECA's adaptive kernel size k = ψ(C), by the authors' code rule.

    Args:
        C: number of channels, an integer >= 1.
        gamma, b: the constants of Eq. 12 (γ = 2, b = 1 in the paper).

    Example:
        >>> [kernel_size(C) for C in (4, 8, 64, 128, 256, 512, 2048)]
        [1, 3, 3, 5, 5, 5, 7]
    """
    C = check_int(C, "C", min_value=1)
    gamma = check_positive_float(gamma, "gamma")
    b = _check_b(b)
    t = int(abs((math.log2(C) + b) / gamma))
    return t if t % 2 else t + 1


@dataclass(frozen=True)
class KernelSizeInfo:
    """The derivation of k for one channel count."""

    C: int
    gamma: float
    b: float
    t_exact: float        # (log2 C + b) / γ
    t: int                # int(|t_exact|), the code's truncation
    k: int                # the authors' code rule (what kernel_size returns)
    tie: bool             # t_exact is an even integer: "nearest odd" is ambiguous
    k_nearest_odd: tuple  # the odd number(s) nearest to t_exact (two on a tie)
    k_timm: int           # timm's EcaModule: max(k, 3)

    def explain(self) -> str:
        parity = "odd, so k = t" if self.t % 2 else "even, so k = t + 1"
        s = (f"t = (log2 {self.C} + {self.b:g}) / {self.gamma:g} = {self.t_exact:.4g}; "
             f"int(t) = {self.t}, {parity} = {self.k}")
        if self.tie:
            s += (f"; tie: {self.t_exact:g} is equally near {self.k_nearest_odd[0]} and "
                  f"{self.k_nearest_odd[1]}, the authors' code takes {self.k}")
        if self.k_timm != self.k:
            s += f"; timm floors k at 3: {self.k_timm}"
        return s


def kernel_size_info(C, gamma=2, b=1) -> KernelSizeInfo:
    """k for C with its derivation, the tie flag and timm's variant."""
    k = kernel_size(C, gamma, b)
    gamma, b = float(gamma), float(b)
    t_exact = (math.log2(C) + b) / gamma
    t = int(abs(t_exact))
    a = abs(t_exact)
    tie = a == int(a) and int(a) % 2 == 0
    if tie:
        nearest = (int(a) - 1, int(a) + 1)
    else:
        nearest = (2 * int(math.floor(a / 2)) + 1,)  # the odd number in [2m, 2m+2) nearest to a
    return KernelSizeInfo(C=int(C), gamma=gamma, b=b, t_exact=t_exact, t=t, k=k, tie=tie,
                          k_nearest_odd=nearest, k_timm=max(k, 3))


def _check_band_weights(w, C):
    """w: (k,) shared (ECA) or (C, k) per channel (ECA-NS); returns k."""
    check_float_array(w, "w", check_finite=False)
    if w.ndim == 1:
        k = w.shape[0]
    elif w.ndim == 2 and w.shape[0] == C:
        k = w.shape[1]
    else:
        raise InputError(f"w must have shape (k,) or (C, k) with C = {C}, got {tuple(w.shape)}")
    check_kernel(k, "k (the kernel size, w.shape[-1])")
    return k


def band_matrix(w, C, circular: bool = False):
    """The C x C matrix B with ``B @ y`` == the 1D convolution of y by w.

    Args:
        w: (k,) shared weights (ECA), or (C, k) one row of k weights per
            channel (ECA-NS, the paper's Eq. 7); k odd.
        C: number of channels.
        circular: wrap around (CECA) instead of zero padding.

    Returns:
        B of shape (C, C): B[i, i + j - p] = w_j (or W[i, j]), p = (k-1)//2;
        with circular=True the column index is taken modulo C and entries that
        land on the same column add up.

    Example:
        >>> import numpy as np
        >>> band_matrix(np.array([1.0, 2.0, 3.0]), 4)
        array([[2., 3., 0., 0.],
               [1., 2., 3., 0.],
               [0., 1., 2., 3.],
               [0., 0., 1., 2.]])
    """
    xp = get_xp()
    C = check_int(C, "C", min_value=1)
    circular = check_bool(circular, "circular")
    k = _check_band_weights(w, C)
    p = (k - 1) // 2
    B = xp.zeros((C, C), dtype=w.dtype)
    for j in range(k):
        d = j - p  # diagonal offset of tap j: column = row + d
        if circular:
            diag = xp.roll(xp.eye(C, dtype=w.dtype), d, axis=1)  # 1 at [i, (i + d) mod C]
        else:
            diag = xp.eye(C, k=d, dtype=w.dtype)  # 1 at [i, i + d], nothing outside the matrix
        weight = w[j] if w.ndim == 1 else w[:, j][:, None]  # scalar, or one per row
        B += weight * diag
    return B


def band_grad_to_kernel(dB, k, *, shared: bool = True, circular: bool = False):
    """Map a gradient with respect to the band matrix back to the kernel.

    Since B = Σ_j w_j D_j with D_j the 0/1 matrix of diagonal j - p, the chain
    rule gives dw_j = Σ (dB ⊙ D_j): the sum of dB along that diagonal
    (only entries inside the matrix: zero-padding aware; wrapped for circular).
    For ECA-NS (shared=False) each row keeps its own entry: dW[i, j] = dB[i, i + j - p].

    Shape:
        dB: (C, C) -> dw: (k,) if shared, else (C, k)
    """
    xp = get_xp()
    check_float_array(dB, "dB", ndim=2, check_finite=False)
    shared = check_bool(shared, "shared")
    circular = check_bool(circular, "circular")
    C = dB.shape[0]
    if dB.shape != (C, C):
        raise InputError(f"dB must be square (C, C), got {tuple(dB.shape)}")
    k = check_kernel(k)
    p = (k - 1) // 2
    cols = []
    for j in range(k):
        d = j - p
        mask = xp.roll(xp.eye(C, dtype=dB.dtype), d, axis=1) if circular else xp.eye(C, k=d, dtype=dB.dtype)
        row_sums = (dB * mask).sum(axis=1)  # (C,): each row's entry on diagonal d
        cols.append(row_sums)
    dW = xp.stack(cols, axis=1)  # (C, k)
    return dW.sum(axis=0) if shared else dW
