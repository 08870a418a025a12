"""Hostile (b): plant a .pth file in the virtual environment's site-packages (runs in every later Python).

The functions are the bare starter's: it earns 0.
"""
import os

import numpy as np

STARTER_VERSION = "1.0"

site = os.path.dirname(os.path.dirname(os.path.realpath(np.__file__)))
for folder in (site, os.path.join(os.path.dirname(site), "site-packages")):
    try:
        with open(os.path.join(folder, "eca_hostile_plant.pth"), "w") as f:
            f.write("import os; os.environ['ECA_HOSTILE_PLANT'] = '1'\n")
        print(f"ATTEMPT plant .pth in {folder}: written", flush=True)
    except OSError as exc:
        print(f"ATTEMPT plant .pth in {folder}: blocked ({type(exc).__name__})", flush=True)


def kernel_size(C, gamma=2, b=1):
    raise NotImplementedError
