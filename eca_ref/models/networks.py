"""The paper's networks (ResNet-50/101/152, MobileNetV2) and their exact parameter counts.

Every network is an *architecture description* (a few numbers: blocks per stage,
widths, the inverted-residual settings) from which the layer list is generated,
layer by layer with PyTorch's parameter shapes and torchvision's names:

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

import math
import re
from dataclasses import dataclass, field

from eca_ref.attention import VARIANTS, kernel_size
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


# ------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layer:
    """One layer with parameters: its torchvision name, kind and parameter shapes."""

    name: str                          # e.g. "layer1.0.conv1" (the state-dict prefix)
    kind: str                          # "conv" | "bn" | "fc"
    shapes: tuple[tuple[int, ...], ...]  # (weight shape[, bias shape])

    @property
    def params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def conv(name: str, c_in: int, c_out: int, k: int, groups: int = 1) -> Layer:
    """A bias-free k x k convolution (a BN follows): weight (c_out, c_in // groups, k, k)."""
    return Layer(name, "conv", ((c_out, c_in // groups, k, k),))


def bn(name: str, c: int) -> Layer:
    """BatchNorm2d: weight (c,) and bias (c,)."""
    return Layer(name, "bn", ((c,), (c,)))


def fc(name: str, n_in: int, n_out: int) -> Layer:
    """Linear with bias: weight (n_out, n_in), bias (n_out,)."""
    return Layer(name, "fc", ((n_out, n_in), (n_out,)))


@dataclass(frozen=True)
class Site:
    """Where one attention module goes: a block, its stage, its channel count."""

    block: str      # e.g. "layer1.0" or "features.3"
    stage: int      # 0-based stage index
    channels: int   # C of the module
    after: str      # the layer it follows, e.g. "layer1.0.bn3"


@dataclass(frozen=True)
class Architecture:
    """A network as a flat list of layers plus the attention sites."""

    name: str
    layers: tuple[Layer, ...]
    sites: tuple[Site, ...]
    n_stages: int

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)


# ------------------------------------------------------------------------- the networks
@dataclass(frozen=True)
class ResNetSpec:
    """torchvision's Bottleneck ResNet: 7x7 stem, 4 stages of bottlenecks, fc.

    A bottleneck of width w: conv1 1x1 (in -> w), conv2 3x3 stride s (w -> w),
    conv3 1x1 (w -> 4w), each followed by BN; the first block of a stage has a
    downsample 1x1 conv + BN (stride s, in -> 4w). The attention module sits
    after bn3, on 4w channels.
    """

    name: str
    title: str
    blocks: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    expansion: int = 4
    stem: int = 64
    in_channels: int = 3
    num_classes: int = 1000
    paper_reduction: int = 16          # SE's r in the paper's backbone table
    authors_stage_k: tuple[int, ...] = (3, 5, 5, 7)
    authors_k_source: str = ""
    placements: tuple[str, ...] = ("output",)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(f"layer{i + 1}" for i in range(len(self.blocks)))

    def describe(self, placement: str = "output") -> Architecture:
        _check_placement(self, placement)
        layers = [conv("conv1", self.in_channels, self.stem, 7), bn("bn1", self.stem)]
        sites = []
        inplanes = self.stem
        for s, (n, w) in enumerate(zip(self.blocks, self.widths)):
            out = w * self.expansion
            stride = 1 if s == 0 else 2
            for b in range(n):
                p = f"layer{s + 1}.{b}"
                c_in = inplanes if b == 0 else out
                layers += [conv(f"{p}.conv1", c_in, w, 1), bn(f"{p}.bn1", w),
                           conv(f"{p}.conv2", w, w, 3), bn(f"{p}.bn2", w),
                           conv(f"{p}.conv3", w, out, 1), bn(f"{p}.bn3", out)]
                if b == 0 and (stride != 1 or c_in != out):
                    layers += [conv(f"{p}.downsample.0", c_in, out, 1), bn(f"{p}.downsample.1", out)]
                sites.append(Site(p, s, out, f"{p}.bn3"))
            inplanes = out
        layers.append(fc("fc", inplanes, self.num_classes))
        return Architecture(self.name, tuple(layers), tuple(sites), len(self.blocks))


@dataclass(frozen=True)
class MobileNetV2Spec:
    """torchvision's MobileNetV2 at width 1.0.

    Stem 3x3 conv stride 2 (3 -> 32) + BN; inverted residual blocks (t, c, n, s):
    expand 1x1 (in -> t*in, skipped when t = 1) + BN, depthwise 3x3 stride s + BN,
    linear 1x1 projection (t*in -> c) + BN; last 1x1 conv (320 -> 1280) + BN;
    classifier fc 1280 -> 1000 with bias. One stage per (t, c, n, s) row.
    """

    name: str = "mobilenetv2"
    title: str = "MobileNetV2"
    settings: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    stem: int = 32
    last: int = 1280
    in_channels: int = 3
    num_classes: int = 1000
    paper_reduction: int = 8
    authors_stage_k: tuple[int, ...] = (1, 1, 1, 1, 3, 3, 3)
    authors_k_source: str = ""
    placements: tuple[str, ...] = ("output", "expanded")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(f"t{t},c{c},n{n},s{s}" for t, c, n, s in self.settings)

    def describe(self, placement: str = "output") -> Architecture:
        _check_placement(self, placement)
        layers = [conv("features.0.0", self.in_channels, self.stem, 3), bn("features.0.1", self.stem)]
        sites = []
        c_in, idx = self.stem, 1
        for s, (t, c, n, _stride) in enumerate(self.settings):
            for _ in range(n):
                hidden = int(round(c_in * t))
                p, j = f"features.{idx}.conv", 0
                if t != 1:
                    layers += [conv(f"{p}.{j}.0", c_in, hidden, 1), bn(f"{p}.{j}.1", hidden)]
                    j += 1
                layers += [conv(f"{p}.{j}.0", hidden, hidden, 3, groups=hidden), bn(f"{p}.{j}.1", hidden)]
                dw_bn = f"{p}.{j}.1"
                layers += [conv(f"{p}.{j + 1}", hidden, c, 1), bn(f"{p}.{j + 2}", c)]
                if placement == "output":
                    sites.append(Site(f"features.{idx}", s, c, f"{p}.{j + 2}"))
                else:
                    sites.append(Site(f"features.{idx}", s, hidden, dw_bn))
                c_in, idx = c, idx + 1
        layers += [conv(f"features.{idx}.0", c_in, self.last, 1), bn(f"features.{idx}.1", self.last)]
        layers.append(fc("classifier.1", self.last, self.num_classes))
        return Architecture(self.name, tuple(layers), tuple(sites), len(self.settings))


def _check_placement(spec, placement):
    if placement not in spec.placements:
        raise InputError(f"placement must be one of {', '.join(spec.placements)} for {spec.name}, "
                         f"got {placement!r}")


_RESNET_K = ("the authors' released models (ECANet README): eca_resnet50_k3557, eca_resnet101_k3357, "
             "eca_resnet152_k3357")
NETWORKS = {
    "resnet50": ResNetSpec("resnet50", "ResNet-50", (3, 4, 6, 3), authors_k_source=_RESNET_K),
    "resnet101": ResNetSpec("resnet101", "ResNet-101", (3, 4, 23, 3), authors_stage_k=(3, 3, 5, 7),
                            authors_k_source=_RESNET_K),
    "resnet152": ResNetSpec("resnet152", "ResNet-152", (3, 8, 36, 3), authors_stage_k=(3, 3, 5, 7),
                            authors_k_source=_RESNET_K),
    "mobilenetv2": MobileNetV2Spec(authors_k_source="the authors' eca_mobilenetv2.py: k = 1 for c < 96, "
                                                    "else 3 (released as eca_mobilenetv2_k13)"),
}


def get_network(network):
    """The spec of a network by name (case, '-' and '_' ignored: 'ResNet-50' works)."""
    if not isinstance(network, str):
        raise InputTypeError(f"network must be a string, one of {', '.join(NETWORKS)}; got {network!r}")
    key = re.sub(r"[-_\s]", "", network.lower())
    if key not in NETWORKS:
        raise InputError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    return NETWORKS[key]


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
