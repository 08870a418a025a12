"""Compatibility names for code that still imports ``eca_ref.params``.

The parameter counts moved: the paper's networks and their counts to
:mod:`eca_ref.models.networks`, the ``compare-params`` tables and the paper's
tables to :mod:`eca_ref.tables`. New code imports from there.
"""
from eca_ref.models.networks import (NETWORKS, UNIT, Architecture, BlockCount, Layer, MobileNetV2Spec, NetworkCount,
                                     ResNetSpec, Site, get_network, network_params, to_M)
from eca_ref.tables import PAPER_NETWORK_M, PAPER_VARIANTS_TABLE, compare_network, compare_variants

__all__ = [
    "Layer", "Site", "Architecture", "ResNetSpec", "MobileNetV2Spec", "NETWORKS", "get_network",
    "BlockCount", "NetworkCount", "network_params", "compare_network", "compare_variants",
    "PAPER_VARIANTS_TABLE", "PAPER_NETWORK_M", "UNIT", "to_M",
]
