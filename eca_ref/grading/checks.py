"""Compare a submission's outputs with the reference, case by case, and explain the mistakes.

Runs in the grader's process only, after the submission's process has ended.
The measured error of a value check is ``max|got - ref| / max(1, max|ref|)``
(tolerance :data:`~eca_ref.grading.rubric.FWD_TOL`); a gradient check reports
``max|num - ana| / max(1e-8, max|num| + max|ana|)`` (:func:`grad_error`, tolerance
:data:`~eca_ref.grading.rubric.GRADCHECK_TOL`).

Diagnoses recognise the classic mistakes and name them: the backward pass that
misses the path through GAP (dx = dout * gate only), a convolution where ECA
uses a cross-correlation (flipped kernel), circular instead of zero padding, a
GAP backward without the 1 / (H W), an SE without its ReLU, an overflowing
sigmoid, and the two other readings of the kernel-size rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np  # host-only: comparisons of arrays returned by the child

from eca_ref.backend import asarray, asnumpy
from eca_ref.gradcheck import rel_error
from eca_ref.grading import solution as sol
from eca_ref.grading.rubric import FAMILIES, FWD_TOL, GRADCHECK_TOL


@dataclass
class CaseResult:
    label: str
    passed: bool
    error: float | None      # the measured error (None when there is nothing to measure)
    message: str             # "" when passed
    credit: float | None = None  # share of the case earned (independent parts: dx and dw); default 1 or 0

    def __post_init__(self):
        if self.credit is None:
            self.credit = 1.0 if self.passed else 0.0


def value_error(got, ref) -> float:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref))))) if ref.size else 0.0


def grad_error(num, ana) -> float:
    """max|num - ana| / max(1e-8, max|num| + max|ana|): :func:`eca_ref.gradcheck.rel_error`, on host arrays."""
    return rel_error(np.asarray(num, dtype=np.float64), np.asarray(ana, dtype=np.float64))


def _close(got, other) -> bool:
    return got.shape == other.shape and value_error(got, other) <= FWD_TOL


def _problem(got, ref_shape, what) -> str | None:
    """Shape, dtype, NaN/inf: what makes a value unusable, or None."""
    if got is None:
        return f"{what} is missing"
    if got.shape != tuple(ref_shape):
        hint = ""
        if len(ref_shape) == 2 and got.shape == tuple(ref_shape) + (1, 1):
            hint = " (use x.mean(axis=(2, 3)) without keepdims)"
        elif len(ref_shape) == 4 and got.shape == tuple(ref_shape[:2]):
            hint = " (that is the gate's shape: return out = x * gate[:, :, None, None])"
        return f"{what} has shape {got.shape}, expected {tuple(ref_shape)}{hint}"
    if got.dtype != np.float64:
        return f"{what} has dtype {got.dtype}, expected float64 (keep the dtype of the input)"
    if not np.all(np.isfinite(got)):
        bad = "NaN" if np.any(np.isnan(got)) else "inf"
        return f"{what} contains {bad}"
    return None


# ------------------------------------------------------------------ references
def reference(family, arrays, dout=None):
    """(out, grads) of the reference for one case; grads is () without dout."""
    spec = FAMILIES[family]
    fwd = getattr(sol, spec["fwd"])
    out, cache = fwd(*[asarray(arrays[a]) for a in spec["args"]])  # on the device under CuPy
    if dout is None:
        return np.asarray(asnumpy(out)), ()
    g = getattr(sol, spec["bwd"])(asarray(dout), cache)
    g = g if isinstance(g, tuple) else (g,)
    return np.asarray(asnumpy(out)), tuple(np.asarray(asnumpy(a)) for a in g)


# ------------------------------------------------------------------ diagnoses
def diagnose_forward(family, arrays, got) -> str:
    try:
        if family in ("eca", "eca_band"):
            x, w = arrays["x"], arrays["w"]
            if w.size > 1 and not np.allclose(w, w[::-1]):
                flipped, _ = reference("eca", {"x": x, "w": w[::-1].copy()})
                if _close(got, flipped):
                    return ("your kernel is flipped: that is a convolution; ECA (like PyTorch's Conv1d) uses a "
                            "cross-correlation, z_i = sum_j w_j y_(i+j-(k-1)//2)")
            if w.size > 1 and _close(got, sol.eca_forward_circular(x, w)):
                return "you pad circularly (that is CECA); ECA pads with (k-1)//2 zeros at both ends"
        if family == "se" and _close(got, sol.se_forward_no_relu(arrays["x"], arrays["w1"], arrays["w2"])):
            return "the ReLU between w1 and w2 is missing: z = w2 relu(w1 y)"
        if family == "sigmoid":
            z = arrays["z"]
            bad = ~np.isfinite(got)
            if bad.any() and np.all(np.abs(z[bad]) > 30):
                return ("NaN/inf only where |z| is large: exp overflowed; use 1/(1+exp(-z)) for z >= 0 and "
                        "exp(z)/(1+exp(z)) for z < 0")
    except Exception:  # a diagnosis must never break grading
        return ""
    return ""


def _gate(family, arrays):
    if family == "eca":
        return sol.gate("eca", arrays["x"], {"w": arrays["w"]})
    return sol.gate("se", arrays["x"], {"w1": arrays["w1"], "w2": arrays["w2"]})


def diagnose_backward(family, arrays, dout, name, got, ref) -> str:
    try:
        if family == "gap" and name == "dx":
            N, C, H, W = arrays["x"].shape
            if H * W > 1 and _close(got, np.broadcast_to(dout[:, :, None, None], (N, C, H, W))):
                return "dx misses the 1/(H*W) of the mean: dx[n, c, i, j] = dy[n, c] / (H*W)"
        if family in ("eca", "se") and name == "dx":
            rescale = dout * _gate(family, arrays)[:, :, None, None]  # (N, C, H, W)
            if _close(got, rescale):
                return ("dx has only the path through the rescale (dout * gate): x also reaches the output "
                        "through GAP -> f -> sigmoid; add that path: dx = dx_rescale + dx_pool")
            if _close(got, ref - rescale):
                return "dx has only the path through GAP; add the direct path of the rescale, dout * gate"
            hw = arrays["x"].shape[2] * arrays["x"].shape[3]
            if hw > 1 and _close(got, rescale + hw * (ref - rescale)):
                return ("the path through GAP is H*W times too large: that is what a gap_backward without the "
                        "1/(H*W) gives; fix gap_backward first")
        if family == "eca" and name == "dw" and got.size > 1 and _close(got, ref[::-1]):
            return "dw is reversed: the kernel is flipped (convolution instead of cross-correlation)"
    except Exception:
        return ""
    return ""


def diagnose_kernel_size(C, gamma, b, got) -> str:
    if got == sol.kernel_size_ties_down(C, gamma, b):
        return ("you round ties down; the authors' code takes t = int(|(log2 C + b) / gamma|) and "
                "k = t if t is odd else t + 1")
    if got == sol.kernel_size_timm(C, gamma, b):
        return "you floor k at 3 like timm; the paper's rule gives k = 1 for C < 8"
    return ""


# ------------------------------------------------------------------ one entry
def check_entry(kind, meta, run, inputs) -> list:
    """CaseResults of one rubric entry from the child's outputs (``run``: runner.EntryRun)."""
    results = []
    for m in meta:
        key, label = m["key"], m["label"]
        if run.status != "ok":
            results.append(CaseResult(label, False, None, run.message))
            continue
        if key in run.errors:
            msg = run.errors[key]
            if msg.startswith("NotImplementedError"):
                msg = "not implemented yet (NotImplementedError)"
            results.append(CaseResult(label, False, None, msg))
            continue
        if "*" in run.errors:
            results.append(CaseResult(label, False, None, run.errors["*"]))
            continue
        out = run.outputs
        if kind == "int":
            want = sol.kernel_size(m["C"], m["gamma"], m["b"])
            got_arr = out.get(f"{key}.out")
            if got_arr is None or got_arr.shape != (1,):
                results.append(CaseResult(label, False, None, "no value returned"))
                continue
            got = int(got_arr[0])
            if got == want:
                results.append(CaseResult(label, True, None, ""))
            else:
                why = diagnose_kernel_size(m["C"], m["gamma"], m["b"], got)
                results.append(CaseResult(label, False, None,
                                          f"returned {got}, expected {want}" + (f": {why}" if why else "")))
            continue
        family = m["family"]
        spec = FAMILIES[family]
        arrays = {a: inputs[f"{key}.{a}"] for a in m["args"]}
        dout = inputs.get(f"{key}.dout")
        if kind == "gradcheck":
            results.append(_gradcheck_case(family, spec, key, label, out, arrays, dout, m["pert"]))
            continue
        ref_out, ref_grads = reference(family, arrays, dout if kind == "backward" else None)
        if kind == "forward":
            got = out.get(f"{key}.out")
            problem = _problem(got, ref_out.shape, f"{spec['fwd']}'s out")
            if problem is None:
                err = value_error(got, ref_out)
                if err <= FWD_TOL:
                    results.append(CaseResult(label, True, err, ""))
                    continue
                problem = f"out differs from the reference: max err {err:.2e}"
            else:
                err = None
            why = diagnose_forward(family, arrays, got) if got is not None and got.shape == ref_out.shape else ""
            results.append(CaseResult(label, False, err, problem + (f"; {why}" if why else "")))
            continue
        results.append(_backward_case(family, spec, key, label, out, arrays, dout, ref_out, ref_grads))
    return results


def _backward_case(family, spec, key, label, out, arrays, dout, ref_out, ref_grads) -> CaseResult:
    """Every gradient vs the reference; each right gradient earns its share of the case."""
    worst, problems, right = 0.0, [], []
    for i, name in enumerate(spec["grads"]):
        got = out.get(f"{key}.g{i}")
        problem = _problem(got, ref_grads[i].shape, name)
        if problem is None:
            err = value_error(got, ref_grads[i])
            worst = max(worst, err)
            if err <= FWD_TOL:
                right.append(name)
                continue
            problem = f"{name} differs from the reference: max err {err:.2e}"
            why = diagnose_backward(family, arrays, dout, name, got, ref_grads[i])
            if why:
                problem += f"; {why}"
        problems.append(problem)
    if not problems:
        return CaseResult(label, True, worst, "")
    message = "; ".join(problems)
    if right:
        message += f"; {' and '.join(right)} right"
    fwd_out = out.get(f"{key}.out")
    if fwd_out is not None and not _close(fwd_out, ref_out):
        message += f" (your {spec['fwd']} is wrong for this case too: fix it first)"
    return CaseResult(label, False, None, message, len(right) / len(spec["grads"]))


def _forward_variants(family, arrays):
    """Forwards whose finite differences are of a real ECA: the reference's, then named honest variants."""
    yield "reference", lambda a: reference(family, a)[0]
    if family == "eca":
        yield "flipped kernel", lambda a: reference("eca", {"x": a["x"], "w": a["w"][::-1].copy()})[0]
        yield "circular padding", lambda a: sol.eca_forward_circular(a["x"], a["w"])


def _perturbed(arrays, names, i, j, delta) -> dict:
    a = {k: v.copy() for k, v in arrays.items()}
    a[names[i]].reshape(-1)[j] += delta
    return a


def _forward_right(family, spec, arrays, base, outs, pert) -> bool:
    """The submission's forward outputs at the base and every perturbed input are one right forward's."""
    for _, fwd in _forward_variants(family, arrays):
        if not _close(base, fwd(arrays)):
            continue
        if all(_close(o, fwd(_perturbed(arrays, spec["args"], i, j, d))) for o, (i, j, d) in zip(outs, pert)):
            return True
    return False


def _gradcheck_case(family, spec, key, label, out, arrays, dout, pert) -> CaseResult:
    """The student's backward vs central differences the grader takes of the student's forward outputs."""
    base, outs = out.get(f"{key}.out"), out.get(f"{key}.p")
    fwd = spec["fwd"]
    if base is None or outs is None or outs.shape != (len(pert),) + dout.shape or base.shape != dout.shape:
        return CaseResult(label, False, None, f"the outputs of {fwd} at the perturbed inputs are missing")
    if not (np.all(np.isfinite(base)) and np.all(np.isfinite(outs))):
        return CaseResult(label, False, None, f"{fwd} returned NaN/inf near this input")
    if not _forward_right(family, spec, arrays, base, outs, pert):
        return CaseResult(label, False, None, f"your {fwd} is wrong for this case: gradient-check points count "
                                              f"only where the forward pass is right (fix {fwd} first)")
    sums = (outs * dout).reshape(len(pert), -1).sum(axis=1)
    worst, problems, right = 0.0, [], []
    for i, name in enumerate(spec["grads"]):
        rows = [k for k, (a, _, _) in enumerate(pert) if a == i]
        plus, minus = sums[rows[0::2]], sums[rows[1::2]]
        h = abs(pert[rows[0]][2])
        num = ((plus - minus) / (2 * h)).reshape(arrays[spec["args"][i]].shape)
        ana = out.get(f"{key}.g{i}")
        if ana is None:
            problems.append(f"{name} is missing")
            continue
        if ana.shape != num.shape:
            problems.append(f"{name} has shape {ana.shape}, expected {num.shape} (the shape of {spec['args'][i]})")
            continue
        if not np.all(np.isfinite(ana)):
            problems.append(f"{name} contains NaN/inf")
            continue
        if float(np.max(np.abs(num))) < 1e-10:
            problems.append(f"your {fwd} does not change when {spec['args'][i]} changes: there is nothing to check")
            continue
        err = grad_error(num, ana)
        worst = max(worst, err)
        if err > GRADCHECK_TOL:
            problems.append(f"{spec['bwd']}: {name} disagrees with central differences of your {fwd}: "
                            f"error {err:.1e}")
        else:
            right.append(name)
    if not problems:
        return CaseResult(label, True, worst, "")
    message = "; ".join(problems) + (f"; {' and '.join(right)} right" if right else "")
    return CaseResult(label, False, None, message, len(right) / len(spec["grads"]))
