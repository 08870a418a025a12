"""The rubric: what is graded, on which inputs, for how many points.

Each :class:`RubricEntry` grades one function (or one gradient check) on
several cases; its score is ``points * passed_cases / cases``, so a function
that is right for N > 1 but wrong for C < k still earns part of its points,
and a right forward pass earns its points even when the backward is wrong.

Kinds of entry:

- ``forward``: the first value returned by the function vs the reference, on fresh
  random float64 inputs;
- ``backward``: the student's forward then backward against a random upstream
  gradient; each gradient vs the reference's;
- ``gradcheck``: the student's backward vs central differences of the student's
  own forward (h = 1e-5, float64). The grader chooses the perturbed inputs, the
  child returns its forward outputs there, and the grader takes the differences;
  a case counts only where those forward outputs are right (the reference's, or a
  named honest variant such as a flipped kernel), so a made-up forward with a
  matching backward earns nothing;
- ``int``: an integer-valued function (kernel_size) vs the reference.

Points can be changed without touching the code: ``eca-ref grade --points
points.json`` with ``{"eca_backward": 20, ...}`` (see docs/grading-teachers.md).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np  # host-only: the grader's inputs are always NumPy arrays

from eca_ref.errors import InputError

H_STEP = 1e-5          # central-difference step
FWD_TOL = 1e-8         # max|got - ref| / max(1, max|ref|) for values vs the reference
GRADCHECK_TOL = 1e-6   # checks.grad_error(numerical, analytic) of the student's own backward

# The functions of the starter interface: forward, backward, argument names, number of gradients.
FAMILIES = {
    "gap": {"fwd": "gap_forward", "bwd": "gap_backward", "args": ("x",), "grads": ("dx",)},
    "sigmoid": {"fwd": "sigmoid_forward", "bwd": "sigmoid_backward", "args": ("z",), "grads": ("dz",)},
    "eca": {"fwd": "eca_forward", "bwd": "eca_backward", "args": ("x", "w"), "grads": ("dx", "dw")},
    "eca_band": {"fwd": "eca_band_forward", "bwd": None, "args": ("x", "w"), "grads": ()},
    "se": {"fwd": "se_forward", "bwd": "se_backward", "args": ("x", "w1", "w2"), "grads": ("dx", "dw1", "dw2")},
}

# Cases: (N, C, H, W) plus k for ECA, the hidden width C // r for SE. They cover N = 1, C < k,
# odd and even C, H != W, H = W = 1, k = 1 and a kernel wider than the channel count.
GAP_CASES = [(1, 5, 3, 3), (3, 4, 2, 5), (2, 7, 1, 1)]
SIGMOID_CASES = [("normal", (4, 7)), ("large |z|", (2, 6)), ("4-D", (2, 3, 2, 2))]
ECA_CASES = [(1, 5, 3, 3, 3), (2, 2, 4, 3, 3), (3, 8, 2, 2, 5), (2, 4, 2, 3, 7), (2, 6, 2, 2, 1)]
SE_CASES = [(1, 6, 3, 3, 3), (2, 8, 2, 2, 2), (2, 5, 3, 2, 1)]
KERNEL_CASES = [(1, 2, 1), (4, 2, 1), (7, 2, 1), (8, 2, 1), (16, 2, 1), (100, 2, 1), (128, 2, 1), (256, 2, 1),
                (512, 2, 1), (2048, 2, 1), (64, 3, 2), (1000, 1, 0)]
GC_GAP = [(2, 3, 2, 2)]
GC_SIGMOID = [("normal", (3, 4))]
GC_ECA = [(2, 4, 2, 2, 3), (1, 2, 2, 3, 3)]
GC_SE = [(2, 6, 2, 2, 3)]


@dataclass(frozen=True)
class RubricEntry:
    """One line of the grade: a name, its points, what it checks."""

    name: str
    points: float
    kind: str          # "forward", "backward", "gradcheck", "int"
    families: tuple    # which function families it calls
    description: str


DEFAULT_RUBRIC = (
    RubricEntry("kernel_size", 5, "int", (), "k = psi(C) by the authors' code rule, 12 (C, gamma, b)"),
    RubricEntry("gap_forward", 5, "forward", ("gap",), "GAP values"),
    RubricEntry("gap_backward", 5, "backward", ("gap",), "GAP gradient dx vs the reference"),
    RubricEntry("sigmoid_forward", 5, "forward", ("sigmoid",), "sigmoid values, also for large |z|"),
    RubricEntry("sigmoid_backward", 5, "backward", ("sigmoid",), "sigmoid gradient dz vs the reference"),
    RubricEntry("eca_forward", 15, "forward", ("eca",), "ECA output, 1D-conv form (C < k, k = 1, N = 1)"),
    RubricEntry("eca_backward", 15, "backward", ("eca",), "ECA gradients dx, dw vs the reference"),
    RubricEntry("eca_band_forward", 10, "forward", ("eca_band",), "ECA output, band-matrix form"),
    RubricEntry("se_forward", 10, "forward", ("se",), "SE output (no bias)"),
    RubricEntry("se_backward", 10, "backward", ("se",), "SE gradients dx, dw1, dw2 vs the reference"),
    RubricEntry("gradcheck_gap_sigmoid", 5, "gradcheck", ("gap", "sigmoid"),
                "your gap/sigmoid backward vs central differences of your forward"),
    RubricEntry("gradcheck_eca", 5, "gradcheck", ("eca",), "your eca_backward vs central differences"),
    RubricEntry("gradcheck_se", 5, "gradcheck", ("se",), "your se_backward vs central differences"),
)


def rubric_with_points(points: dict | None, rubric=DEFAULT_RUBRIC) -> tuple:
    """The rubric with some entries' points replaced; unknown names or bad values are an InputError."""
    if not points:
        return tuple(rubric)
    if not isinstance(points, dict):
        raise InputError(f"points must be a JSON object {{entry name: points}}, got {type(points).__name__}")
    names = [e.name for e in rubric]
    unknown = sorted(set(points) - set(names))
    if unknown:
        raise InputError(f"unknown rubric entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                         f"the entries are: {', '.join(names)}")
    out = []
    for e in rubric:
        if e.name in points:
            p = points[e.name]
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not np.isfinite(p) or p < 0:
                raise InputError(f"points for {e.name} must be a number >= 0, got {p!r}")
            e = replace(e, points=float(p) if not float(p).is_integer() else int(p))
        out.append(e)
    return tuple(out)


def load_points(path) -> dict:
    """Read a points file: a JSON object {entry name: points}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"points file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"points file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"points file {path} must hold a JSON object {{entry name: points}}")
    return data


# ------------------------------------------------------------------ inputs and the job
def submission_rng(seed: int, source: bytes) -> np.random.Generator:
    """The inputs' generator: fixed by the seed and the submission's bytes.

    Two submissions never share inputs (so no answer computed for one is of use to
    another), and grading the same file with the same seed always gives the same score.
    """
    digest = int.from_bytes(hashlib.sha256(source).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed), digest]))


def _label(family, case) -> str:
    if family in ("gap",):
        N, C, H, W = case
        return f"N={N} C={C} HxW={H}x{W}"
    if family == "sigmoid":
        kind, shape = case
        return f"z {shape} ({kind})"
    if family in ("eca", "eca_band"):
        N, C, H, W, k = case
        tags = [t for t, on in (("N=1", N == 1), ("C<k", C < k), ("even C", C % 2 == 0)) if on]
        return f"N={N} C={C} HxW={H}x{W} k={k}" + (f" [{', '.join(tags)}]" if tags else "")
    N, C, H, W, hidden = case
    return f"N={N} C={C} HxW={H}x{W} C//r={hidden}"


def _make_inputs(rng, family, case) -> dict:
    if family == "gap":
        return {"x": rng.standard_normal(case)}
    if family == "sigmoid":
        kind, shape = case
        z = 3.0 * rng.standard_normal(shape)
        if kind == "large |z|":
            z.reshape(-1)[: 6] = [800.0, -800.0, 40.0, -40.0, 710.0, -745.0]
        return {"z": z}
    if family in ("eca", "eca_band"):
        N, C, H, W, k = case
        return {"x": rng.standard_normal((N, C, H, W)), "w": rng.uniform(-1.0, 1.0, k)}
    N, C, H, W, hidden = case
    x = rng.standard_normal((N, C, H, W))
    w1 = rng.uniform(-1.0, 1.0, (hidden, C))
    h = x.mean(axis=(2, 3)) @ w1.T  # (N, hidden)
    w1[(h <= 0).all(axis=0)] *= -1.0  # every hidden unit active for some sample: the gate depends on x
    return {"x": x, "w1": w1, "w2": rng.uniform(-1.0, 1.0, (C, hidden))}


def _out_shape(family, arrays):
    return arrays["x"].shape[:2] if family == "gap" else arrays[FAMILIES[family]["args"][0]].shape


def _cases_for(entry):
    if entry.kind == "gradcheck":
        table = {"gap": GC_GAP, "sigmoid": GC_SIGMOID, "eca": GC_ECA, "se": GC_SE}
    else:
        table = {"gap": GAP_CASES, "sigmoid": SIGMOID_CASES, "eca": ECA_CASES, "eca_band": ECA_CASES,
                 "se": SE_CASES}
    return [(fam, case) for fam in entry.families for case in table[fam]]


def build_job(rubric, seed: int, source: bytes):
    """The job for the child and the parent's bookkeeping.

    Returns:
        (entries, inputs, cases): ``entries`` is the JSON-able job (one dict per rubric
        entry, each with its calls); ``inputs`` maps '<key>.<arg>' to float64 arrays;
        ``cases`` is, per entry, a list of dicts (key, family, label, args) for the checks.
    """
    rng = submission_rng(seed, source)
    entries, inputs, cases = [], {}, []
    for e_index, entry in enumerate(rubric):
        calls, meta = [], []
        if entry.kind == "int":
            for c_index, (C, gamma, b) in enumerate(KERNEL_CASES):
                key = f"e{e_index}c{c_index}"
                kwargs = {} if (gamma, b) == (2, 1) else {"gamma": gamma, "b": b}
                calls.append({"key": key, "kind": "int", "fn": "kernel_size", "scalars": [C], "kwargs": kwargs})
                label = f"kernel_size({C}" + "".join(f", {k}={v}" for k, v in kwargs.items()) + ")"
                meta.append({"key": key, "family": "kernel_size", "label": label, "C": C, "gamma": gamma, "b": b})
        else:
            for c_index, (fam, case) in enumerate(_cases_for(entry)):
                key = f"e{e_index}c{c_index}"
                spec = FAMILIES[fam]
                arrays = _make_inputs(rng, fam, case)
                call = {"key": key, "kind": entry.kind, "fn": spec["fwd"], "args": []}
                for name, a in arrays.items():
                    inputs[f"{key}.{name}"] = a
                    call["args"].append(f"{key}.{name}")
                if entry.kind in ("backward", "gradcheck"):
                    dout = rng.standard_normal(_out_shape(fam, arrays))
                    inputs[f"{key}.dout"] = dout
                    call.update(bwd=spec["bwd"], dout=f"{key}.dout", ngrads=len(spec["grads"]))
                if entry.kind == "gradcheck":  # the parent's perturbations: (argument, flat index, +-h)
                    call["pert"] = [[i, j, sign * H_STEP] for i, a in enumerate(spec["args"])
                                    for j in range(arrays[a].size) for sign in (1.0, -1.0)]
                calls.append(call)
                meta.append({"key": key, "family": fam, "label": _label(fam, case), "args": list(arrays),
                             "pert": call.get("pert", [])})
        entries.append({"name": entry.name, "calls": calls})
        cases.append(meta)
    return entries, inputs, cases
