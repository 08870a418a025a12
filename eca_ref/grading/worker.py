"""The child process of ``eca-ref grade``: runs one untrusted submission, nothing else.

The grader starts this file by path, as ``python -I -S worker.py JOBDIR WORKDIR SITE CMD_FD RESP_FD``,
in a fresh private working directory, with a minimal environment and resource
limits, inside the sandbox (see :mod:`eca_ref.grading.sandbox`). JOBDIR (read-only
where the platform allows) holds job.json and inputs.npz; the submission and its
outputs are in WORKDIR. It uses only the standard library
and NumPy (found through SITE, a folder that holds NumPy alone): it never
imports eca_ref, and the reference answers never exist in this process.

Protocol (one JSON object per line on RESP_FD; commands on CMD_FD):

    -> {"ev": "ready"}                              NumPy and the job are loaded
    -> {"ev": "imported", "ok": bool, "error": str}  the submission was imported
    <- "run I"                                       run rubric entry I of job.json
    -> {"ev": "done", "entry": I, "errors": {key: str}, "seconds": float}
       (its outputs in WORKDIR/out_I.npz, plain arrays only; for a gradient check also the
       forward outputs at the perturbed inputs the parent listed, '<key>.p')
    <- "quit"

The parent compares the outputs with its own answers after this process is
gone, and takes the numerical gradients itself; this process is as untrusted as
the submission (which can patch it), and only ever reports the submission's outputs.
"""
import importlib.util
import json
import numbers
import os
import sys
import time
import traceback

if __name__ == "__main__":  # NumPy comes from SITE, a folder that holds NumPy alone
    sys.dont_write_bytecode = True  # -I ignores PYTHONDONTWRITEBYTECODE
    sys.path.insert(0, sys.argv[3])
import numpy as np  # noqa: E402 (after the path is set)

MAX_ARRAY = 1_000_000  # elements; outputs of the graded shapes are a few hundred


def _send(fd, obj, _dumps=json.dumps, _write=os.write):
    data = (_dumps(obj) + "\n").encode()
    while data:
        n = _write(fd, data)
        data = data[n:]


def _read_line(fd, buf, _read=os.read):
    while b"\n" not in buf[0]:
        chunk = _read(fd, 4096)
        if not chunk:
            return None
        buf[0] += chunk
    line, _, rest = buf[0].partition(b"\n")
    buf[0] = rest
    return line.decode("ascii", "replace").strip()


def _one_line(exc, sub_path):
    """'ValueError: msg (line 12, in eca_forward)': the exception and where in the submission."""
    name = type(exc).__name__
    try:
        msg = str(exc).strip().splitlines()
        msg = msg[0] if msg else ""
    except BaseException:  # a hostile __str__
        msg = "<unprintable message>"
    where = ""
    try:
        for fs in traceback.extract_tb(exc.__traceback__):
            if fs.filename == sub_path:
                where = f" (line {fs.lineno}, in {fs.name})"
    except BaseException:
        pass
    text = f"{name}: {msg}" if msg else name
    if len(text) > 240:
        text = text[:237] + "..."
    return text + where


class _Fail(Exception):
    """A returned value of the wrong kind; the message is for the student."""


def _as_array(np, value, what):
    if isinstance(value, bool) or not isinstance(value, np.ndarray):
        raise _Fail(f"{what} is a {type(value).__name__}, expected a numpy.ndarray")
    a = np.asarray(value)
    if a.dtype.kind not in "fiu":
        raise _Fail(f"{what} has dtype {a.dtype}, expected float64")
    if a.size > MAX_ARRAY:
        raise _Fail(f"{what} has {a.size} elements, far more than expected")
    return np.array(a, copy=True)


def _pair(value, fn):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = f"type {type(value).__name__}" if not isinstance(value, (tuple, list)) else f"{len(value)} values"
        raise _Fail(f"{fn} must return a pair (out, cache), got {got}")
    return value


def _grads(np, value, fn, n):
    if n == 1:
        if isinstance(value, (tuple, list)):
            raise _Fail(f"{fn} must return one array, got a {type(value).__name__} of {len(value)} values")
        return [_as_array(np, value, f"the value returned by {fn}")]
    if not isinstance(value, (tuple, list)) or len(value) != n:
        got = f"type {type(value).__name__}" if not isinstance(value, (tuple, list)) else f"{len(value)} values"
        raise _Fail(f"{fn} must return {n} arrays, got {got}")
    return [_as_array(np, v, f"value {i + 1} of {n} returned by {fn}") for i, v in enumerate(value)]


def _run_call(np, mod, call, inputs, out):
    """Run one call of an entry; put its arrays into ``out`` under '<key>.<name>'."""
    key, kind = call["key"], call["kind"]

    def fn(name):
        f = getattr(mod, name, None)
        if f is None:
            raise _Fail(f"the submission defines no function {name}")
        if not callable(f):
            raise _Fail(f"{name} in the submission is a {type(f).__name__}, not a function")
        return f

    def args():  # fresh copies every time: a function that writes into its input hurts no other call
        return [inputs[a].copy() for a in call["args"]]

    if kind == "int":
        value = fn(call["fn"])(*call["scalars"], **call.get("kwargs", {}))
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _Fail(f"{call['fn']} returned {value!r} ({type(value).__name__}), expected an int")
        out[f"{key}.out"] = np.array([int(value)], dtype=np.int64)
        return
    fwd = fn(call["fn"])
    result = _pair(fwd(*args()), call["fn"])
    out[f"{key}.out"] = _as_array(np, result[0], f"the first value (out) returned by {call['fn']}")
    if kind == "forward":
        return
    dout = inputs[call["dout"]]
    grads = _grads(np, fn(call["bwd"])(dout.copy(), result[1]), call["bwd"], call["ngrads"])
    for i, g in enumerate(grads):
        out[f"{key}.g{i}"] = g
    if kind != "gradcheck":
        return
    # forward outputs at the inputs the parent chose (one entry moved by +-h at a time); the parent
    # checks them and takes the differences itself: nothing here decides a score
    outs = []
    for i, j, delta in call["pert"]:
        a = args()
        a[i].reshape(-1)[j] += delta
        o = _as_array(np, _pair(fwd(*a), call["fn"])[0], f"out of {call['fn']}")
        if o.shape != dout.shape:
            raise _Fail(f"{call['fn']} returned shape {o.shape}, expected {dout.shape}")
        outs.append(o)
    out[f"{key}.p"] = np.stack(outs) if outs else np.zeros((0,) + dout.shape)


def main(argv):
    jobdir, workdir, cmd_fd, resp_fd = argv[1], argv[2], int(argv[4]), int(argv[5])

    with open(os.path.join(jobdir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    with np.load(os.path.join(jobdir, "inputs.npz"), allow_pickle=False) as z:
        inputs = {k: z[k] for k in z.files}
    savez = np.savez
    sub_path = os.path.join(workdir, "submission.py")
    _send(resp_fd, {"ev": "ready"})
    try:
        spec = importlib.util.spec_from_file_location("submission", sub_path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["submission"] = mod
        spec.loader.exec_module(mod)
    except SystemExit as exc:
        _send(resp_fd, {"ev": "imported", "ok": False,
                        "error": f"the submission called sys.exit({exc.code!r}) while being imported"})
        return 0
    except BaseException as exc:  # SyntaxError, ImportError, anything raised at top level
        if isinstance(exc, SyntaxError):
            text = f"SyntaxError: {exc.msg} (line {exc.lineno})"
        else:
            text = _one_line(exc, sub_path)
        _send(resp_fd, {"ev": "imported", "ok": False, "error": text})
        return 0
    _send(resp_fd, {"ev": "imported", "ok": True})

    buf = [b""]
    while True:
        line = _read_line(cmd_fd, buf)
        if line is None or line == "quit":
            return 0
        if not line.startswith("run "):
            continue
        index = int(line[4:])
        entry = job["entries"][index]
        out, errors = {}, {}
        t0 = time.perf_counter()
        for call in entry["calls"]:
            try:
                _run_call(np, mod, call, inputs, out)
            except _Fail as exc:
                errors[call["key"]] = str(exc)
            except SystemExit as exc:
                errors[call["key"]] = f"the submission called sys.exit({exc.code!r})"
            except BaseException as exc:  # the student's exception, MemoryError, RecursionError, ...
                errors[call["key"]] = _one_line(exc, sub_path)
        seconds = time.perf_counter() - t0
        path = os.path.join(workdir, f"out_{index}.npz")
        try:
            savez(path, **out)
        except BaseException as exc:
            errors["*"] = f"the outputs could not be saved: {type(exc).__name__}"
        _send(resp_fd, {"ev": "done", "entry": index, "errors": errors, "seconds": round(seconds, 4)})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
