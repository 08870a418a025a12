"""Hostile (a): append to the grader's own files, found from sys.argv[0], __file__ paths and NumPy's folder.

Every attempt prints 'ATTEMPT <what>: <result>'. The functions are the bare starter's: it earns 0.
"""
import os
import sys

import numpy as np

STARTER_VERSION = "1.0"
PAYLOAD = "\n# eca-hostile-append\n"


def _targets():
    found = [os.path.abspath(sys.argv[0])]
    here = os.path.dirname(os.path.realpath(np.__file__))
    for _ in range(6):  # NumPy's folder leads to the environment, and the environment to the project
        here = os.path.dirname(here)
        for rel in ("eca_ref/grading/grade.py", "eca_ref/grading/checks.py", "eca_ref/__init__.py"):
            if os.path.exists(os.path.join(here, rel)):
                found.append(os.path.join(here, rel))
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and "eca_ref" in f:
            found.append(f)
    return sorted(set(found))


for path in _targets():
    try:
        with open(path, "a") as f:
            f.write(PAYLOAD)
        print(f"ATTEMPT append {path}: written", flush=True)
    except OSError as exc:
        print(f"ATTEMPT append {path}: blocked ({type(exc).__name__})", flush=True)


def kernel_size(C, gamma=2, b=1):
    raise NotImplementedError


def gap_forward(x):
    raise NotImplementedError
