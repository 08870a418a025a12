"""eca-ref: the reference implementation of ECA-Net in plain NumPy.

>>> from eca_ref import VARIANTS, kernel_size, band_matrix
>>> VARIANTS["eca"].formula, kernel_size(512)
('σ(C1D_k(y))', 5)

The names below are loaded on first use (PEP 562), so that ``import eca_ref.<module>`` costs only
that module: the ``eca-ref`` command starts without loading NumPy before it can handle Ctrl-C.
"""
import importlib

__version__ = "0.1.0"
__all__ = ["VARIANTS", "band_matrix", "get_variant", "kernel_size", "kernel_size_info", "__version__"]

_FROM_ATTENTION = ("VARIANTS", "band_matrix", "get_variant", "kernel_size", "kernel_size_info")


def __getattr__(name):
    if name in _FROM_ATTENTION:
        return getattr(importlib.import_module("eca_ref.attention"), name)
    raise AttributeError(f"module 'eca_ref' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
