"""A submission that tries to cheat. Every attempt is reported on stdout as 'ATTEMPT <what>: <result>'.

It tries to import the reference, to find secrets in its environment, to read files of the
grader's process, to plant a perfect results.json in the grader's working directory (now and,
from a background process, after grading), and to find reference answers in its folder.
"""
import os
import sys
import time

import numpy as np

STARTER_VERSION = "1.0"


def _attempt(what, fn):
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001
        result = f"blocked ({type(exc).__name__})"
    print(f"ATTEMPT {what}: {result}", flush=True)


def _import_reference():
    import eca_ref  # noqa: F401

    return "imported eca_ref"


def _secrets():
    leaked = sorted(k for k in os.environ if "SECRET" in k or "TOKEN" in k or "KEY" in k)
    return f"env has {len(os.environ)} variables; secret-looking: {leaked or 'none'}"


FAKE = '{"score": 100, "max_score": 100, "tests": []}'


def _plant_results():
    target = os.path.join(f"/proc/{os.getppid()}/cwd", "results.json")
    with open(target, "w") as f:
        f.write(FAKE)
    return f"wrote {target}"


def _plant_later():
    pid = os.fork()
    if pid == 0:  # the grandchild: wait until the grader has written its results, then replace them
        try:
            time.sleep(1.5)
            with open(os.path.join(f"/proc/{os.getppid()}/cwd", "results.json"), "w") as f:
                f.write(FAKE)
        finally:
            os._exit(0)
    return f"background writer pid {pid}"


def _answers_in_folder():
    found = sorted(os.listdir("."))
    hits = [f for f in found if "answer" in f.lower() or "solution" in f.lower() or "expected" in f.lower()]
    return f"files here: {found}; answer-like: {hits or 'none'}"


_attempt("import eca_ref", _import_reference)
_attempt("secrets", _secrets)
_attempt("plant results.json", _plant_results)
_attempt("plant results.json later", _plant_later)
_attempt("reference answers in the working folder", _answers_in_folder)
_attempt("sys.path", lambda: [p for p in sys.path if "site-packages" in p] or "no site-packages")


def gap_forward(x):
    return np.zeros(x.shape[:2]), None


def kernel_size(C, gamma=2, b=1):
    return 3
