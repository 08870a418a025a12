"""Hostile (d): copy the reference, and print what it can read of the grader.

It puts the grader's package folder on sys.path (found from NumPy's folder, the parent's working
folder and command line) and does `from eca_ref.grading.solution import *`; it prints the solution's
source, the parent's command line and the files of the grader's working folder. Where that fails it
falls back to the bare starter: it earns 0.
"""
import os
import sys

import numpy as np

STARTER_VERSION = "1.0"


def _roots():
    out = []
    here = os.path.dirname(os.path.realpath(np.__file__))
    for _ in range(6):
        here = os.path.dirname(here)
        out.append(here)
    for p in (f"/proc/{os.getppid()}/cwd", "/work/main", "/autograder/source"):
        out.append(p)
    return out


def _show(what, fn):
    try:
        print(f"ATTEMPT {what}: {fn()}", flush=True)
    except BaseException as exc:  # noqa: BLE001
        print(f"ATTEMPT {what}: blocked ({type(exc).__name__})", flush=True)


copied = False
for root in _roots():
    if os.path.isdir(os.path.join(root, "eca_ref", "grading")):
        sys.path.insert(0, root)
        _show(f"read solution.py under {root}",
              lambda: open(os.path.join(root, "eca_ref", "grading", "solution.py")).read()[:300])
        try:
            from eca_ref.grading.solution import *  # noqa: F401,F403
            copied = True
            print(f"ATTEMPT import the solution from {root}: imported", flush=True)
            break
        except BaseException as exc:  # noqa: BLE001
            print(f"ATTEMPT import the solution from {root}: blocked ({type(exc).__name__})", flush=True)
_show("parent's command line", lambda: open(f"/proc/{os.getppid()}/cmdline").read().replace("\0", " "))
_show("grader's working folder", lambda: sorted(os.listdir(f"/proc/{os.getppid()}/cwd")))
_show("grader's secret file", lambda: open(f"/proc/{os.getppid()}/cwd/teacher-secret.txt").read())
print(f"ATTEMPT copied: {copied}", flush=True)

if not copied:
    def kernel_size(C, gamma=2, b=1):
        raise NotImplementedError

    def gap_forward(x):
        raise NotImplementedError
