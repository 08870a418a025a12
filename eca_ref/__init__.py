"""eca-ref: the reference implementation of ECA-Net in plain NumPy.

>>> from eca_ref import VARIANTS, kernel_size, band_matrix
>>> VARIANTS["eca"].formula, kernel_size(512)
('σ(C1D_k(y))', 5)
"""
from eca_ref.attention import VARIANTS, band_matrix, get_variant, kernel_size, kernel_size_info

__version__ = "0.1.0"
__all__ = ["VARIANTS", "band_matrix", "get_variant", "kernel_size", "kernel_size_info", "__version__"]
