"""The paper's networks (ResNet-50/101/152, MobileNetV2) and their exact parameter counts.

Every network is an *architecture description* (a few numbers: blocks per stage,
widths, the inverted-residual settings; :mod:`eca_ref.models.architectures`) from
which the layer list is generated, layer by layer with PyTorch's parameter shapes
and torchvision's names:

    conv  weight (C_out, C_in / groups, kh, kw)      no bias (BN follows)
    bn    weight (C,), bias (C,)                     running statistics are buffers, not parameters
    fc    weight (out, in), bias (out,)

A network's count is the sum over that list; no total is typed in. Attention
modules sit at *sites* (one per block) and their counts come from the registry,
``VARIANTS[name].count_params(C, **hp)``.

Where the modules sit (docs/paper.md, "Where the module sits"; the authors'
eca_resnet.py and eca_mobilenetv2.py):

* ResNet (Bottleneck): one module per block on its output channels 4 * width,
  after bn3 and before the residual addition.
* MobileNetV2: one module per inverted residual block on its output channels,
  after the BN of the linear 1x1 projection and before the residual addition
  (``placement="output"``, the default). This is the placement that gives the
  paper's 3.40M for SE (r = 8) and 3.34M for ECA; the other natural choice, on
  the expanded channels after the depthwise conv (``placement="expanded"``,
  MobileNetV3 style), adds 1,128,064 for SE (r = 8) and would give 4.42M.

The paper counts in units of 2^20 ("M" = 1,048,576 parameters).

>>> network_params("resnet50").total
25557032
>>> network_params("resnet50", "se").added, network_params("resnet50", "eca", stage_k=(3, 5, 5, 7)).added
(2514944, 80)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from eca_ref.attention import VARIANTS, kernel_size
from eca_ref.models.architectures import (NETWORKS, Architecture, Layer, MobileNetV2Spec, ResNetSpec, Site,
                                          get_network)
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_int, check_kernel

__all__ = [
    "Layer", "Site", "Architecture", "ResNetSpec", "MobileNetV2Spec", "NETWORKS", "get_network",
    "BlockCount", "NetworkCount", "network_params", "parse_groups", "groups_at", "check_stage_k", "UNIT", "to_M",
]

UNIT = 2 ** 20  # the paper's "M"


def to_M(n: int) -> float:
    """Parameters in the paper's unit of 2^20, rounded to 2 decimals (25,557,032 -> 24.37)."""
    return round(n / UNIT, 2)


# ------------------------------------------------------------------------- counting
@dataclass(frozen=True)
class BlockCount:
    """One attention module of a network: where it is, its C, its resolved hp, its parameters."""

    block: str
    stage: int
    channels: int
    hp: dict
    params: int


@dataclass(frozen=True)
class NetworkCount:
    """A network's parameters with one attention variant.

    total = base + added; base is the plain network (sum over its layers),
    added the sum of per_block[i].params.
    """

    network: str
    variant: str
    placement: str
    base: int
    added: int
    total: int
    per_block: tuple[BlockCount, ...] = field(repr=False)

    @property
    def M(self) -> float:
        return to_M(self.total)

    def stage_hp(self, key: str) -> list:
        """The distinct values of hyper-parameter ``key`` per stage, e.g. [5, 5, 5, 7] for k."""
        out: dict[int, list] = {}
        for b in self.per_block:
            vals = out.setdefault(b.stage, [])
            if b.hp.get(key) not in vals:
                vals.append(b.hp.get(key))
        return [v[0] if len(v) == 1 else v for _, v in sorted(out.items())]


def parse_groups(groups):
    """groups: an int G, or the string "C/d" (G = C // d at each block, d a positive int)."""
    if isinstance(groups, str):
        m = re.fullmatch(r"\s*C\s*/\s*(\d+)\s*", groups)
        if m is None:
            try:
                return check_int(int(groups), "groups", min_value=1)
            except ValueError:
                raise InputError(f"groups must be a positive integer or 'C/d' (e.g. C/16), got {groups!r}") from None
        d = int(m.group(1))
        if d < 1:
            raise InputError(f"groups 'C/d' needs d >= 1, got {groups!r}")
        return ("C/", d)
    return check_int(groups, "groups", min_value=1)


def groups_at(spec, C, where):
    """G at a block with C channels; InputError (naming the block) when G does not divide C."""
    if isinstance(spec, tuple):
        d = spec[1]
        if C % d:
            raise InputError(f"groups = C/{d} does not fit {where} (C = {C}): C is not divisible by {d}")
        return C // d
    if C % spec:
        raise InputError(f"groups = {spec} does not fit {where} (C = {C}): G must divide C")
    return spec


def check_stage_k(stage_k, n_stages, network):
    """stage_k ("3,5,5,7" or a sequence) as a tuple of odd ints, one per stage of the network."""
    if isinstance(stage_k, str):
        try:
            stage_k = [int(v) for v in stage_k.split(",")]
        except ValueError:
            raise InputError(f"stage_k must be comma-separated odd integers, e.g. 3,5,5,7, got {stage_k!r}") from None
    try:
        stage_k = tuple(stage_k)
    except TypeError:
        raise InputTypeError(f"stage_k must be a sequence of odd integers, got {stage_k!r}") from None
    if len(stage_k) != n_stages:
        raise InputError(f"stage_k must give one kernel size per stage: {network} has {n_stages} stages, "
                         f"got {len(stage_k)} value(s) {','.join(map(str, stage_k))}")
    return tuple(check_kernel(k, "stage_k entry") for k in stage_k)


def network_params(network, variant: str = "none", *, reduction: int | None = None, bias: bool = False,
                   groups=16, k: int | None = None, stage_k=None, placement: str = "output") -> NetworkCount:
    """Exact parameter count of a network with one attention module per block.

    Args:
        network: "resnet50", "resnet101", "resnet152" or "mobilenetv2".
        variant: a registry name (see ``VARIANTS``); "none" for the plain network.
        reduction: SE's r; None -> the paper's choice for the network (16 for ResNets, 8 for MobileNetV2).
        bias: SE's FC layers with biases (the paper's count has none).
        groups: SE-GC's G: an int, or "C/d" for G = C // d at each block (the paper's C/16, C/8).
        k: kernel size of the k-variants (eca-ns, eca, eca-band, ceca) in every block;
            None -> Eq. 12 per block, ``kernel_size(C)``.
        stage_k: one kernel size per stage instead (e.g. (3, 5, 5, 7), the authors' ResNet-50).
        placement: "output" (default; see the module docstring) or, for MobileNetV2, "expanded".

    Returns:
        NetworkCount with base (plain network), added (attention), total, per_block.

    Raises:
        InputError naming the block when r, groups or k does not fit a block's C.

    Example:
        >>> c = network_params("resnet50", "eca")      # k by Eq. 12: 5, 5, 5, 7
        >>> c.added, c.stage_hp("k"), c.M
        (86, [5, 5, 5, 7], 24.37)
    """
    spec = get_network(network)
    v = VARIANTS[variant]
    if not isinstance(placement, str):
        raise InputTypeError(f"placement must be a string, got {placement!r}")
    arch = spec.describe(placement)
    takes = set(v.hp_defaults)

    r = spec.paper_reduction if reduction is None else check_int(reduction, "reduction", min_value=1)
    if not isinstance(bias, bool):
        raise InputTypeError(f"bias must be True or False, got {bias!r}")
    g_spec = parse_groups(groups)
    if k is not None and stage_k is not None:
        raise InputError("give k (one kernel size for every block) or stage_k (one per stage), not both")
    if k is not None:
        k = check_kernel(k, "k")
    if stage_k is not None:
        stage_k = check_stage_k(stage_k, arch.n_stages, spec.name)

    blocks = []
    for site in arch.sites:
        C = site.channels
        hp = {}
        if "r" in takes:
            hp["r"] = r
        if "bias" in takes:
            hp["bias"] = bias
        if "groups" in takes:
            hp["groups"] = groups_at(g_spec, C, f"block {site.block} of {spec.name}")
        if "k" in takes:
            hp["k"] = stage_k[site.stage] if stage_k is not None else (k if k is not None else kernel_size(C))
        try:
            n = v.count_params(C, **hp)
        except InputError as exc:
            raise InputError(f"{variant} does not fit block {site.block} of {spec.name} (C = {C}): {exc}") from None
        blocks.append(BlockCount(site.block, site.stage, C, hp, n))
    base = arch.params
    added = sum(b.params for b in blocks)
    return NetworkCount(spec.name, v.name, placement, base, added, base + added, tuple(blocks))
