"""The registry of attention variants: one entry per row of the paper's SE-variants table.

Tests, the parameter tables, the CLI, the trainer and the grader loop over
``VARIANTS`` without naming variants.
"""
from __future__ import annotations

from collections.abc import Mapping

from eca_ref.attention import variants as fv
from eca_ref.attention.kernel import kernel_size
from eca_ref.attention.module import Variant
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_int, check_kernel


# ------------------------------------------------------------- hyper-parameter rules
def _no_hp(C, hp):
    return {}


def _se_hp(C, hp):
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


def _gc_hp(C, hp):
    G = check_int(hp["groups"], "groups", min_value=1)
    if C % G:
        raise InputError(f"groups must divide C = {C} (each group has C / groups channels), got {G}")
    return {"groups": G}


def _k_hp(C, hp):
    k = hp["k"]
    if k is None:
        return {"k": kernel_size(C)}
    k = check_kernel(k, "k")
    if k > 2 * C - 1:
        raise InputError(f"k must be <= 2C - 1 = {2 * C - 1} for C = {C} (wider taps never reach a channel), got {k}")
    return {"k": k}


# ----------------------------------------------------------------- inferring hp from params
def _shape_of(params, key, ndim):
    a = params.get(key)
    if a is None:
        raise InputError(f"params must hold {key!r}, got keys {sorted(params)}")
    if a.ndim != ndim:
        raise InputError(f"params[{key!r}] must be {ndim}-D, got shape {tuple(a.shape)}")
    return a.shape


def _se_infer(params, C):
    return {"hidden": _shape_of(params, "w1", 2)[0], "bias": "b1" in params or "b2" in params}


def _gc_infer(params, C):
    return {"groups": _shape_of(params, "W", 3)[0]}


def _k_infer(key, ndim):
    def infer(params, C):
        return {"k": _shape_of(params, key, ndim)[-1]}
    return infer


# ----------------------------------------------------------------- the variants
def _se_shapes(C, hp):
    h = hp["hidden"]
    shapes = {"w1": (h, C), "w2": (C, h)}
    if hp["bias"]:
        shapes.update(b1=(h,), b2=(C,))
    return shapes


def _se_count(C, hp):
    h = hp["hidden"]  # C // r
    return 2 * C * h + ((h + C) if hp["bias"] else 0)  # 2C^2/r (+ biases)


def _se_fan_in(C, hp):
    return {"w1": C, "w2": hp["hidden"], "b1": C, "b2": hp["hidden"]}


def _k_shapes(key, per_channel):
    def shapes(C, hp):
        return {key: (C, hp["k"]) if per_channel else (hp["k"],)}
    return shapes


def _k_fan_in(key):
    def fan_in(C, hp):
        return {key: hp["k"]}
    return fan_in


_LIST = [
    Variant("none", "x (no attention)", "0", "vanilla: no attention module", {},
            _no_hp, lambda C, hp: {}, lambda C, hp: 0, lambda C, hp: {}, lambda p, C: {}),
    Variant("se", "σ(W₂ ReLU(W₁ y))", "2C²/r", "SE: two FC layers with reduction r",
            {"r": 16, "bias": False}, _se_hp, _se_shapes, _se_count, _se_fan_in, _se_infer,
            fv.se_f_forward, fv.se_f_backward, fv.se_f_loop),
    Variant("se-var1", "σ(y)", "0", "SE-Var1: the pooled descriptor itself, no parameters", {},
            _no_hp, lambda C, hp: {}, lambda C, hp: 0, lambda C, hp: {}, lambda p, C: {},
            fv.identity_f_forward, fv.identity_f_backward, fv.identity_f_loop),
    Variant("se-var2", "σ(w ⊙ y)", "C", "SE-Var2: one weight per channel (diagonal)", {},
            _no_hp, lambda C, hp: {"w": (C,)}, lambda C, hp: C, lambda C, hp: {"w": 1}, lambda p, C: {},
            fv.diagonal_f_forward, fv.diagonal_f_backward, fv.diagonal_f_loop),
    Variant("se-var3", "σ(W y)", "C²", "SE-Var3: a full C x C matrix", {},
            _no_hp, lambda C, hp: {"W": (C, C)}, lambda C, hp: C * C, lambda C, hp: {"W": C},
            lambda p, C: {}, fv.full_f_forward, fv.full_f_backward, fv.full_f_loop),
    Variant("se-gc", "σ(GC_G(y))", "C²/G", "SE-GC: block-diagonal W with G groups", {"groups": 16},
            _gc_hp, lambda C, hp: {"W": (hp["groups"], C // hp["groups"], C // hp["groups"])},
            lambda C, hp: C * C // hp["groups"], lambda C, hp: {"W": C // hp["groups"]}, _gc_infer,
            fv.grouped_f_forward, fv.grouped_f_backward, fv.grouped_f_loop),
    Variant("eca-ns", "σ(Σⱼ wᵢʲ yᵢʲ)", "kC", "ECA-NS: band matrix, k free weights per channel",
            {"k": None}, _k_hp, _k_shapes("W", True), lambda C, hp: hp["k"] * C, _k_fan_in("W"),
            _k_infer("W", 2), fv.ecans_f_forward, fv.ecans_f_backward,
            lambda y, p: fv.conv_f_loop(y, p["W"])),
    Variant("eca", "σ(C1D_k(y))", "k", "ECA: one k-tap 1D convolution over channels",
            {"k": None}, _k_hp, _k_shapes("w", False), lambda C, hp: hp["k"], _k_fan_in("w"),
            _k_infer("w", 1), fv.eca_f_forward, fv.shared_conv_f_backward,
            lambda y, p: fv.conv_f_loop(y, p["w"])),
    Variant("eca-band", "σ(B_k(w) y)", "k", "ECA as a C x C band matrix with k shared weights",
            {"k": None}, _k_hp, _k_shapes("w", False), lambda C, hp: hp["k"], _k_fan_in("w"),
            _k_infer("w", 1), fv.band_f_forward, fv.band_f_backward, fv.band_f_loop),
    Variant("ceca", "σ(CC1D_k(y))", "k", "CECA: the 1D convolution with circular padding",
            {"k": None}, _k_hp, _k_shapes("w", False), lambda C, hp: hp["k"], _k_fan_in("w"),
            _k_infer("w", 1), fv.ceca_f_forward, fv.shared_conv_f_backward,
            lambda y, p: fv.conv_f_loop(y, p["w"], circular=True)),
]


class UnknownVariantError(InputError, KeyError):
    """An attention variant name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Mapping):
    """A read-only mapping name -> Variant whose lookup error lists the known names."""

    def __init__(self, variants):
        self._d = {v.name: v for v in variants}

    def __getitem__(self, name):
        try:
            return self._d[name]
        except (KeyError, TypeError):
            raise UnknownVariantError(
                f"unknown attention variant {name!r}; known: {', '.join(self._d)}") from None

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __repr__(self):
        return f"Registry({', '.join(self._d)})"


VARIANTS = Registry(_LIST)


def get_variant(name) -> Variant:
    """VARIANTS[name], with an error that lists the known names."""
    return VARIANTS[name]
