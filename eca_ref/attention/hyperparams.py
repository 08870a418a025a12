"""The hyper-parameters of the variants: their rules, and reading them back from parameter shapes.

A rule takes C and the hyper-parameters with their defaults filled in, checks
them against C and returns them resolved (``k=None`` becomes Eq. 12's k, SE's
r becomes a hidden width C // r). A reader takes a params dict and returns the
hyper-parameters its shapes imply (a (5,) ECA kernel implies k = 5).
"""
from __future__ import annotations

from eca_ref.attention.kernel import kernel_size
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_int, check_kernel


# ------------------------------------------------------------- rules: (C, hp) -> hp
def se_hp(C, hp) -> dict:
    """SE: r (1 <= r <= C, hidden width C // r) or a given hidden width; bias True/False."""
    bias = hp["bias"]
    if not isinstance(bias, bool):
        raise InputTypeError(f"bias must be True or False, got {bias!r}")
    if hp.get("hidden") is not None:  # implied by given params
        return {"r": None, "hidden": check_int(hp["hidden"], "hidden width (w1.shape[0])", min_value=1),
                "bias": bias}
    r = check_int(hp["r"], "r", min_value=1)
    if r > C:
        raise InputError(f"r (the reduction ratio) must be <= C = {C} so that C // r >= 1, got {r}")
    return {"r": r, "hidden": C // r, "bias": bias}


def groups_hp(C, hp) -> dict:
    """SE-GC: G groups, G dividing C."""
    G = check_int(hp["groups"], "groups", min_value=1)
    if C % G:
        raise InputError(f"groups must divide C = {C} (each group has C / groups channels), got {G}")
    return {"groups": G}


def kernel_hp(C, hp) -> dict:
    """ECA, ECA-NS, CECA: an odd k <= 2C - 1; None means Eq. 12, ``kernel_size(C)``."""
    k = hp["k"]
    if k is None:
        return {"k": kernel_size(C)}
    k = check_kernel(k, "k")
    if k > 2 * C - 1:
        raise InputError(f"k must be <= 2C - 1 = {2 * C - 1} for C = {C} (wider taps never reach a channel), got {k}")
    return {"k": k}


# ----------------------------------------------------- readers: (params, C) -> hp
def _shape_of(params, key, ndim):
    a = params.get(key)
    if a is None:
        raise InputError(f"params must hold {key!r}, got keys {sorted(params)}")
    if a.ndim != ndim:
        raise InputError(f"params[{key!r}] must be {ndim}-D, got shape {tuple(a.shape)}")
    return a.shape


def se_hp_from_params(params, C) -> dict:
    """w1 (hidden, C) gives the hidden width; b1/b2 present means bias=True."""
    return {"hidden": _shape_of(params, "w1", 2)[0], "bias": "b1" in params or "b2" in params}


def groups_hp_from_params(params, C) -> dict:
    """W (G, C/G, C/G) gives G."""
    return {"groups": _shape_of(params, "W", 3)[0]}


def shared_kernel_hp_from_params(params, C) -> dict:
    """w (k,) gives k (ECA, ECA-band, CECA)."""
    return {"k": _shape_of(params, "w", 1)[-1]}


def per_channel_kernel_hp_from_params(params, C) -> dict:
    """W (C, k) gives k (ECA-NS)."""
    return {"k": _shape_of(params, "W", 2)[-1]}
