"""`eca-ref verify`: the numerical proofs behind the reference, as plain functions.

1. ECA as a 1D convolution and ECA as a band matrix are the same function with
   the same input gradient (and CECA is the circular band matrix).
2. The gradient map between the forms: summing the band-matrix gradient dB
   along each of the k diagonals gives the convolution's dw (ECA-NS: each row
   keeps its own k entries).
3. Every variant, GAP and the sigmoid pass a central-difference gradient check
   in float64 against a random upstream gradient, for x and every parameter.
4. The vectorised forward equals the plain-loop forward for every variant.
5. count_params (the sum over the parameter shapes) == the size of init_params
   == the paper's #Param formula.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy

from eca_ref.attention import VARIANTS, band_grad_to_kernel, band_matrix
from eca_ref.attention.eca import ConvCache, conv_f_backward, conv_f_forward
from eca_ref.backend import get_xp
from eca_ref.errors import InputError
from eca_ref.functional.activations import sigmoid_backward, sigmoid_forward
from eca_ref.functional.pooling import gap_backward, gap_forward
from eca_ref.gradcheck import eval_numerical_gradient_array, rel_error

# Small hyper-parameters so that every variant fits C = 8 in the checks.
CHECK_HP = {"se": {"r": 4}, "se-gc": {"groups": 4}}
GRADCHECK_TOL = 1e-7
# The finite differences are accurate to about 1e-11 in absolute terms (about 1e-7 of an entry of 1e-4); an entry whose true value is
# smaller than this (two paths cancelling by chance) cannot be checked to 1e-7 *relative* error, so
# the inputs are redrawn until no gradient entry is that small.
MIN_CHECKABLE = 1e-4
EQUAL_TOL = {"float64": 1e-12, "float32": 1e-5}

# The paper's #Param column (docs/paper.md, "Table 2: the SE variants"), written out independently of the
# registry, which derives each count from the parameter shapes.
PAPER_PARAM_FORMULA = {
    "none": lambda C, r, G, k: 0,
    "se": lambda C, r, G, k: 2 * C**2 / r,
    "se-var1": lambda C, r, G, k: 0,
    "se-var2": lambda C, r, G, k: C,
    "se-var3": lambda C, r, G, k: C**2,
    "se-gc": lambda C, r, G, k: C**2 / G,
    "eca-ns": lambda C, r, G, k: k * C,
    "eca": lambda C, r, G, k: k,
    "eca-band": lambda C, r, G, k: k,
    "ceca": lambda C, r, G, k: k,
}


@dataclass(frozen=True)
class CheckResult:
    proof: int      # 1..5, the numbered proofs above
    name: str       # what was compared
    case: str       # the input it was compared on
    error: float    # the measured error
    tol: float      # the bound it must stay under (or equal, for counts)
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _max_abs(a, b) -> float:
    xp = get_xp()
    return float(xp.max(xp.abs(a - b))) if a.size else 0.0


def _randn(rng, shape, dtype):
    return get_xp().asarray(rng.standard_normal(shape).astype(dtype))


def _forms_agree(rng, dtype, tol):
    """Proof 1: conv form == band form (output, dx, dw); CECA == circular band matrix."""
    out = []
    cases = [(2, 16, 4, 4, 3), (3, 7, 5, 3, 3), (1, 2, 3, 3, 3), (1, 4, 2, 2, 5), (4, 64, 2, 2, 5)]
    for N, C, H, W, k in cases:
        x = _randn(rng, (N, C, H, W), dtype)
        params = VARIANTS["eca"].init_params(C, rng=rng, dtype=dtype, k=k)
        dout = _randn(rng, (N, C, H, W), dtype)
        o1, c1 = VARIANTS["eca"].forward(x, params)
        o2, c2 = VARIANTS["eca-band"].forward(x, params)
        dx1, g1 = VARIANTS["eca"].backward(dout, c1)
        dx2, g2 = VARIANTS["eca-band"].backward(dout, c2)
        err = max(_max_abs(o1, o2), _max_abs(dx1, dx2), _max_abs(g1["w"], g2["w"]))
        case = f"x {(N, C, H, W)}, k = {k}" + (" (C < k)" if C < k else "") + (" (odd C)" if C % 2 else "")
        out.append(CheckResult(1, "eca == eca-band: out, dx, dw", case, err, tol, err <= tol))
    for N, C, k in [(3, 9, 3), (2, 16, 5)]:
        y = _randn(rng, (N, C), dtype)
        w = _randn(rng, (k,), dtype)
        z_conv, _ = conv_f_forward(y, w, circular=True)
        z_band = y @ band_matrix(w, C, circular=True).T
        err = _max_abs(z_conv, z_band)
        out.append(CheckResult(1, "ceca == circular band matrix", f"y {(N, C)}, k = {k}", err, tol, err <= tol))
    return out


def _gradient_map(rng, dtype, tol):
    """Proof 2: diagonal sums of dB give dw (shared) and dW (ECA-NS, per row)."""
    out = []
    for N, C, k, circular in [(4, 12, 3, False), (2, 5, 5, False), (3, 3, 5, False), (3, 10, 5, True)]:
        y = _randn(rng, (N, C), dtype)
        dz = _randn(rng, (N, C), dtype)
        dB = dz.T @ y  # gradient with respect to the band matrix, (C, C)
        w = _randn(rng, (k,), dtype)
        _, dw = conv_f_backward(dz, ConvCache(y, w, circular))
        err = _max_abs(band_grad_to_kernel(dB, k, circular=circular), dw)
        label = "ceca" if circular else "eca"
        out.append(CheckResult(2, f"{label}: Σ diagonals of dB == dw", f"y {(N, C)}, k = {k}", err, tol, err <= tol))
        if not circular:
            W = _randn(rng, (C, k), dtype)
            _, dW = conv_f_backward(dz, ConvCache(y, W, False))
            err = _max_abs(band_grad_to_kernel(dB, k, shared=False), dW)
            out.append(CheckResult(2, "eca-ns: dB on the band == dW", f"y {(N, C)}, k = {k}", err, tol, err <= tol))
    return out


def _inputs_away_from_kinks(v, rng, shape, margin=1e-2):
    """x and params for a gradient check, redrawn while a ReLU input lies within ``margin`` of 0.

    SE's ReLU has no derivative at 0: a finite difference that steps across the
    kink measures a slope that does not exist. Every other variant is smooth.
    """
    while True:
        x = _randn(rng, shape, numpy.float64)
        params = v.init_params(shape[1], rng=rng, dtype=numpy.float64, **CHECK_HP.get(v.name, {}))
        if v.name != "se":
            return x, params
        hidden = gap_forward(x)[0] @ params["w1"].T  # (N, C//r), the ReLU's input
        if float(get_xp().abs(hidden).min()) > margin:
            return x, params


def _gradchecks(rng):
    """Proof 3: central differences in float64 for x and every parameter."""
    out = []
    f64 = numpy.float64
    x = _randn(rng, (2, 5, 3, 4), f64)
    dy = _randn(rng, (2, 5), f64)
    _, cache = gap_forward(x)
    err = rel_error(gap_backward(dy, cache), eval_numerical_gradient_array(lambda: gap_forward(x)[0], x, dy))
    out.append(CheckResult(3, "gradcheck gap: dx", "x (2, 5, 3, 4)", err, GRADCHECK_TOL, err < GRADCHECK_TOL))
    z = _randn(rng, (3, 7), f64) * 3
    ds = _randn(rng, (3, 7), f64)
    _, cache = sigmoid_forward(z)
    err = rel_error(sigmoid_backward(ds, cache),
                    eval_numerical_gradient_array(lambda: sigmoid_forward(z)[0], z, ds))
    out.append(CheckResult(3, "gradcheck sigmoid: dz", "z (3, 7)", err, GRADCHECK_TOL, err < GRADCHECK_TOL))
    for name, v in VARIANTS.items():
        C = 8
        for _ in range(100):  # draw until every gradient entry is large enough to check relatively
            x, params = _inputs_away_from_kinks(v, rng, (2, C, 3, 3))
            out_, cache = v.forward(x, params)
            dout = _randn(rng, out_.shape, f64)
            dx, grads = v.backward(dout, cache)
            if min(float(get_xp().abs(g).min()) for g in [dx, *grads.values()]) > MIN_CHECKABLE:
                break
        f = lambda: v.forward(x, params)[0]  # noqa: E731  reads x and params as they are perturbed
        for key, analytic, target in [("x", dx, x)] + [(k, grads[k], params[k]) for k in params]:
            err = rel_error(analytic, eval_numerical_gradient_array(f, target, dout))
            out.append(CheckResult(3, f"gradcheck {name}: d{key}", f"x (2, {C}, 3, 3)", err, GRADCHECK_TOL,
                                   err < GRADCHECK_TOL))
    return out


def _loops(rng, dtype, tol):
    """Proof 4: vectorised forward == plain-loop forward."""
    out = []
    for name, v in VARIANTS.items():
        for C in (8, 12):
            x = _randn(rng, (2, C, 3, 2), dtype)
            params = v.init_params(C, rng=rng, dtype=dtype, **CHECK_HP.get(name, {}))
            err = _max_abs(v.forward(x, params)[0], v.forward_loop(x, params))
            out.append(CheckResult(4, f"{name}: vectorised == loop", f"x (2, {C}, 3, 2)", err, tol, err <= tol))
    return out


def _counts(rng):
    """Proof 5: count_params (from the shapes) == size of init_params == the paper's closed form."""
    out = []
    for C, r, G, k in [(64, 16, 16, 3), (256, 16, 16, 5), (512, 8, 32, 5)]:
        for name, v in VARIANTS.items():
            hp = {"se": {"r": r}, "se-gc": {"groups": G}}.get(name, {"k": k} if "k" in v.hp_defaults else {})
            counted = v.count_params(C, **hp)
            size = sum(int(a.size) for a in v.init_params(C, rng=rng, **hp).values())
            paper = PAPER_PARAM_FORMULA[name](C, r, G, k)
            err = float(max(abs(counted - size), abs(counted - paper)))
            out.append(CheckResult(5, f"{name}: count == size == {v.param_formula}",
                                   f"C = {C}, r = {r}, G = {G}, k = {k}: {counted}", err, 0.0, err == 0))
    return out


def run_verify(seed: int = 0, dtype: str = "float64") -> list[CheckResult]:
    """Run every proof; returns one CheckResult per line (see the module docstring).

    ``dtype`` applies to proofs 1, 2 and 4; gradient checks always run in float64.
    """
    if dtype not in EQUAL_TOL:
        raise InputError(f"dtype must be one of {', '.join(EQUAL_TOL)}, got {dtype!r}")
    rng = numpy.random.default_rng(seed)
    dt = numpy.dtype(dtype)
    tol = EQUAL_TOL[dtype]
    return (_forms_agree(rng, dt, tol) + _gradient_map(rng, dt, tol) + _gradchecks(rng)
            + _loops(rng, dt, tol) + _counts(rng))


__all__ = ["run_verify", "CheckResult", "PAPER_PARAM_FORMULA"]
