"""Channel attention: the shared module, every variant of the paper, the kernel-size rule."""
from eca_ref.attention.kernel import (KernelSizeInfo, band_grad_to_kernel, band_matrix, kernel_size,
                                      kernel_size_info)
from eca_ref.attention.module import AttentionCache, Variant
from eca_ref.attention.registry import VARIANTS, UnknownVariantError, get_variant

__all__ = ["VARIANTS", "Variant", "AttentionCache", "UnknownVariantError", "get_variant", "kernel_size",
           "kernel_size_info", "KernelSizeInfo", "band_matrix", "band_grad_to_kernel"]
