"""One attention module, many variants: GAP -> f -> σ -> rescale.

For a feature map X of shape (N, C, H, W):

    y   = GAP(X)                  (N, C)     the paper's g(X)
    z   = f(y)                    (N, C)     the only part that differs between variants
    s   = σ(z)                    (N, C)     the gate, one weight per channel
    out = X ⊙ s[:, :, None, None] (N, C, H, W)

The backward pass adds the two paths by which X reaches the output: through
the rescale directly, and through GAP -> f -> σ (micrograd's rule):

    dX = dout ⊙ s                          (path 1: the rescale)
       + dy / (H W), broadcast over H, W   (path 2: GAP), dy = f'(y)^T (ds ⊙ s(1-s)), ds = Σ_hw dout ⊙ X

A variant is declared once, with keyword arguments, next to its f (in
:mod:`eca_ref.attention.variants` or :mod:`eca_ref.attention.eca`); its parameter
count is derived from its parameter shapes (the sum of their products), never typed in.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy

from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.activations import sigmoid
from eca_ref.functional.pooling import gap_forward, gap_forward_loop
from eca_ref.validation import check_float_array, check_int, check_same_dtype


def no_hyperparameters(C, hp) -> dict:
    """The hyper-parameter rule of a variant that takes none."""
    return {}


def no_parameters(C, hp) -> dict:
    """The shapes (and fan-ins) of a variant without parameters."""
    return {}


def nothing_to_infer(params, C) -> dict:
    """A variant whose parameter shapes imply no hyper-parameter."""
    return {}


class AttentionCache(NamedTuple):
    x: object        # (N, C, H, W) the input
    s: object        # (N, C) the gate σ(f(GAP(x)))
    f_cache: object  # whatever f's backward needs


@dataclass(frozen=True)
class Variant:
    """An attention variant: the shared module plus its own f.

    Declared with keywords, e.g. ``Variant(name="eca", formula="σ(C1D_k(y))", ...)``.

    Attributes:
        name: registry key, e.g. "eca".
        formula: the gate as a formula, e.g. "σ(C1D_k(y))".
        param_formula: parameters per module as the paper writes it, e.g. "k" (text for tables).
        description: one line for tables.
        hp_defaults: hyper-parameters and defaults (keyword arguments of init_params/count_params).
        hp_rule: (C, hp) -> hp with defaults filled in and checked against C.
        shapes: (C, hp) -> {param: shape}.
        fan_in: (C, hp) -> {param: fan_in} for the uniform init.
        hp_from_params: (params, C) -> the hyper-parameters that the params' shapes imply.
        f_forward: (y, params) -> (z, f_cache), y and z (N, C); None for "none" (no attention).
        f_backward: (dz, f_cache) -> (dy, grads), grads keyed like params.
        f_loop: (y, params) -> z, the same f as plain loops.
    """

    name: str
    formula: str
    param_formula: str
    description: str
    hp_defaults: dict = field(default_factory=dict)
    hp_rule: Callable = no_hyperparameters
    shapes: Callable = no_parameters
    fan_in: Callable = no_parameters
    hp_from_params: Callable = nothing_to_infer
    f_forward: Callable | None = None
    f_backward: Callable | None = None
    f_loop: Callable | None = None

    # ---------------------------------------------------------------- hyper-parameters
    def resolve_hp(self, C, **hp) -> dict:
        """Fill in defaults, check every hyper-parameter against C, return them."""
        C = check_int(C, "C", min_value=1)
        unknown = set(hp) - set(self.hp_defaults)
        if unknown:
            known = ", ".join(self.hp_defaults) or "none"
            raise InputError(f"unknown hyper-parameter(s) {', '.join(sorted(unknown))} for variant "
                             f"{self.name!r} (it takes: {known})")
        return self.hp_rule(C, {**self.hp_defaults, **hp})

    def param_shapes(self, C, **hp) -> dict:
        """{name: shape} of this variant's parameters for C channels."""
        return self.shapes(C, self.resolve_hp(C, **hp))

    def count_params(self, C, **hp) -> int:
        """Parameters of one module with C channels: the sum over its parameter shapes."""
        return sum(math.prod(shape) for shape in self.param_shapes(C, **hp).values())

    # ---------------------------------------------------------------- parameters
    def init_params(self, C, rng=None, dtype=None, **hp) -> dict:
        """Fresh parameters: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for Linear/Conv1d.

        Args:
            C: channels.
            rng: numpy.random.Generator (default: a fresh default_rng(0)).
            dtype: float64 (default) or float32.
            **hp: the variant's hyper-parameters (see hp_defaults).
        """
        xp = get_xp()  # the host generator draws; the arrays move to the backend
        dtype = numpy.dtype(numpy.float64 if dtype is None else dtype)
        if dtype not in (numpy.float32, numpy.float64):
            raise InputTypeError(f"dtype must be float32 or float64, got {dtype}")
        if rng is None:
            rng = numpy.random.default_rng(0)
        if not isinstance(rng, numpy.random.Generator):
            raise InputTypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        hp = self.resolve_hp(C, **hp)
        fan_in = self.fan_in(C, hp)
        params = {}
        for name, shape in self.shapes(C, hp).items():
            bound = 1.0 / math.sqrt(fan_in[name])
            params[name] = xp.asarray(rng.uniform(-bound, bound, size=shape).astype(dtype))
        return params

    def check_params(self, params, C, dtype=None, *, check_finite=True) -> dict:
        """Check a params dict against C (keys, shapes, dtype); return the implied hp."""
        if not isinstance(params, Mapping):
            raise InputTypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        for key, a in params.items():
            check_float_array(a, f"params[{key!r}]", check_finite=check_finite)
            if dtype is not None and a.dtype != dtype:
                raise InputTypeError(f"params[{key!r}] must have the dtype of x ({dtype}), got {a.dtype}")
        hp = self.hp_from_params(params, C)
        expected = self.shapes(C, self.hp_rule(C, {**self.hp_defaults, **hp}))
        missing = [k for k in expected if k not in params]
        extra = [k for k in params if k not in expected]
        if missing or extra:
            want = ", ".join(f"{k} {v}" for k, v in expected.items()) or "no parameters"
            raise InputError(f"params for {self.name!r} with C = {C} must hold exactly: {want}; "
                             f"missing {missing or 'none'}, unexpected {extra or 'none'}")
        for key, shape in expected.items():
            if tuple(params[key].shape) != tuple(shape):
                raise InputError(f"params[{key!r}] must have shape {tuple(shape)} for C = {C}, "
                                 f"got {tuple(params[key].shape)}")
        return hp

    # ---------------------------------------------------------------- the module
    def forward(self, x, params, *, check_finite: bool = True):
        """out = x ⊙ σ(f(GAP(x))) per channel.

        Args:
            x: (N, C, H, W) float32 or float64.
            params: dict from init_params (same dtype as x).
            check_finite: reject NaN/inf in x and params (one pass over x).

        Returns:
            (out, cache): out has x's shape and dtype.
        """
        check_float_array(x, "x", ndim=4, dims="(N, C, H, W)", check_finite=check_finite)
        self.check_params(params, x.shape[1], x.dtype, check_finite=check_finite)
        if self.f_forward is None:  # "none": no attention
            return x.copy(), AttentionCache(x, None, None)
        y, _ = gap_forward(x, check_finite=False)  # GAP                      (N, C)
        z, f_cache = self.f_forward(y, params)  # f                           (N, C)
        s = sigmoid(z)  # σ, the gate                                         (N, C)
        out = x * s[:, :, None, None]  # rescale each channel                 (N, C, H, W)
        return out, AttentionCache(x, s, f_cache)

    def backward(self, dout, cache: AttentionCache):
        """Gradients of the module: (dx, grads), grads keyed like params.

        Shape:
            dout: (N, C, H, W) -> dx: (N, C, H, W); grads[name] has params[name]'s shape.
        """
        x, s, f_cache = cache
        check_float_array(dout, "dout", shape=x.shape, dims="(N, C, H, W)", check_finite=False)
        check_same_dtype(x, dout, "dout")
        if self.f_forward is None:
            return dout.copy(), {}
        xp = get_xp()
        H, W = x.shape[2], x.shape[3]
        dx_rescale = dout * s[:, :, None, None]  # path 1: out = x * s          (N, C, H, W)
        ds = xp.einsum("nchw,nchw->nc", dout, x)  # Σ over H, W of dout * x     (N, C)
        dz = ds * s * (1 - s)  # through σ                                      (N, C)
        dy, grads = self.f_backward(dz, f_cache)  # through f                   (N, C)
        dx_pool = dy[:, :, None, None] / (H * W)  # path 2: GAP, broadcast      (N, C, 1, 1)
        dx = dx_rescale + dx_pool  # the two paths add up                       (N, C, H, W)
        return dx, grads

    def gate(self, x, params, *, check_finite: bool = True):
        """The attention weights σ(f(GAP(x))), shape (N, C) (all ones for "none")."""
        xp = get_xp()
        check_float_array(x, "x", ndim=4, dims="(N, C, H, W)", check_finite=check_finite)
        self.check_params(params, x.shape[1], x.dtype, check_finite=check_finite)
        if self.f_forward is None:
            return xp.ones(x.shape[:2], dtype=x.dtype)
        y, _ = gap_forward(x, check_finite=False)
        return sigmoid(self.f_forward(y, params)[0])

    def forward_loop(self, x, params):
        """The same forward pass as plain loops (slow; small inputs only)."""
        xp = get_xp()
        check_float_array(x, "x", ndim=4, dims="(N, C, H, W)")
        self.check_params(params, x.shape[1], x.dtype)
        if self.f_forward is None:
            return x.copy()
        y = gap_forward_loop(x)  # (N, C)
        z = self.f_loop(y, params)  # (N, C)
        N, C, H, W = x.shape
        out = xp.zeros_like(x)
        for n in range(N):
            for c in range(C):
                s = 1.0 / (1.0 + math.exp(-float(z[n, c])))
                out[n, c] = x[n, c] * s
        return out

    def __repr__(self) -> str:
        return f"Variant({self.name!r}: {self.formula}, #Param {self.param_formula})"
