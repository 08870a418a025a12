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

Inside ``eca_ref.parallel.threads`` the passes over X (GAP, the rescale, ds and the sum of the
two paths) are split over ranges of channels; f and σ work on the small (N, C) arrays.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from eca_ref import parallel
from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.activations import sigmoid
from eca_ref.functional.pooling import gap_forward, gap_forward_loop
from eca_ref.validation import check_float_array, check_int, check_same_dtype


def _rescale(a, s):
    """a * s[:, :, None, None] into a new array with a's memory order, a range of channels per thread."""
    out = get_xp().empty_like(a)

    def part(c0, c1):
        get_xp().multiply(a[:, c0:c1], s[:, c0:c1, None, None], out=out[:, c0:c1])

    parallel.over_channels(part, a)
    return out


class AttentionCache(NamedTuple):
    x: object        # (N, C, H, W) the input
    s: object        # (N, C) the gate σ(f(GAP(x)))
    f_cache: object  # whatever f's backward needs


@dataclass(frozen=True)
class Variant:
    """An attention variant: the shared module plus its own f.

    Attributes:
        name: registry key, e.g. "eca".
        formula: the gate as a formula, e.g. "σ(C1D_k(y))".
        param_formula: parameters per module, e.g. "k".
        description: one line for tables.
        hp_defaults: hyper-parameters and defaults (keyword arguments of init_params/count_params).
    """

    name: str
    formula: str
    param_formula: str
    description: str
    hp_defaults: dict
    _resolve: Callable       # (C, hp) -> hp with defaults filled and checked
    _shapes: Callable        # (C, hp) -> {param: shape}
    _count: Callable         # (C, hp) -> int, the closed form of the paper's table
    _fan_in: Callable        # (C, hp) -> {param: fan_in} for the uniform init
    _infer: Callable         # (params, C) -> hp implied by the params' shapes
    f_forward: Callable | None = None
    f_backward: Callable | None = None
    f_loop: Callable | None = None
    extra: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- hyper-parameters
    def resolve_hp(self, C, **hp) -> dict:
        """Fill in defaults, check every hyper-parameter against C, return them."""
        C = check_int(C, "C", min_value=1)
        unknown = set(hp) - set(self.hp_defaults)
        if unknown:
            known = ", ".join(self.hp_defaults) or "none"
            raise InputError(f"unknown hyper-parameter(s) {', '.join(sorted(unknown))} for variant "
                             f"{self.name!r} (it takes: {known})")
        merged = {**self.hp_defaults, **hp}
        return self._resolve(C, merged)

    def param_shapes(self, C, **hp) -> dict:
        """{name: shape} of this variant's parameters for C channels."""
        return self._shapes(C, self.resolve_hp(C, **hp))

    def count_params(self, C, **hp) -> int:
        """Parameters of one module with C channels, by the paper's closed form."""
        return int(self._count(C, self.resolve_hp(C, **hp)))

    # ---------------------------------------------------------------- parameters
    def init_params(self, C, rng=None, dtype=None, **hp) -> dict:
        """Fresh parameters: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for Linear/Conv1d.

        Args:
            C: channels.
            rng: numpy.random.Generator (default: a fresh default_rng(0)).
            dtype: float64 (default) or float32.
            **hp: the variant's hyper-parameters (see hp_defaults).
        """
        import numpy  # the host generator; arrays move to the backend below

        xp = get_xp()
        dtype = numpy.dtype(numpy.float64 if dtype is None else dtype)
        if dtype not in (numpy.float32, numpy.float64):
            raise InputTypeError(f"dtype must be float32 or float64, got {dtype}")
        if rng is None:
            rng = numpy.random.default_rng(0)
        if not isinstance(rng, numpy.random.Generator):
            raise InputTypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        hp = self.resolve_hp(C, **hp)
        fan_in = self._fan_in(C, hp)
        params = {}
        for name, shape in self._shapes(C, hp).items():
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
        hp = self._infer(params, C)
        expected = self._shapes(C, self._resolve(C, {**self.hp_defaults, **hp}))
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
        xp = get_xp()
        y = xp.concatenate(parallel.over_channels(lambda c0, c1: gap_forward(x[:, c0:c1], check_finite=False)[0], x),
                           axis=1)  # (N, C) = GAP(x), a range of channels per thread
        z, f_cache = self.f_forward(y, params)  # (N, C)
        s = sigmoid(z)  # (N, C)
        out = _rescale(x, s)  # x * s[:, :, None, None]                        (N, C, H, W)
        return out, AttentionCache(x, s, f_cache)

    def backward(self, dout, cache: AttentionCache):
        """Gradients of the module: (dx, grads), grads keyed like params."""
        x, s, f_cache = cache
        check_float_array(dout, "dout", shape=x.shape, dims="(N, C, H, W)", check_finite=False)
        check_same_dtype(x, dout, "dout")
        if self.f_forward is None:
            return dout.copy(), {}
        xp = get_xp()
        H, W = x.shape[2], x.shape[3]
        dx_rescale = _rescale(dout, s)  # path 1: out = x * s, dout * s          (N, C, H, W)
        ds = xp.concatenate(parallel.over_channels(  # Σ over H, W of dout * x              (N, C)
            lambda c0, c1: xp.einsum("nchw,nchw->nc", dout[:, c0:c1], x[:, c0:c1]), x), axis=1)
        dz = ds * s * (1 - s)  # through σ                                      (N, C)
        dy, grads = self.f_backward(dz, f_cache)  # through f                   (N, C)
        dx_pool = (dy / (H * W))[:, :, None, None]  # path 2: GAP, broadcast    (N, C, 1, 1)
        dx = dx_rescale

        def add_pool(c0, c1):  # dx = dx_rescale + dx_pool, in place: no second full-size array
            dx[:, c0:c1] += dx_pool[:, c0:c1]

        parallel.over_channels(add_pool, dx)
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
