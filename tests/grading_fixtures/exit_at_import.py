"""Calls sys.exit(0) while being imported."""
import sys

import numpy as np

sys.exit(0)


def gap_forward(x):
    return x.mean(axis=(2, 3)), x.shape
