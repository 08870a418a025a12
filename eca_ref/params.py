"""Exact parameter counts: per attention module and per network (ResNet-50/101/152, MobileNetV2).

Every network is an *architecture description* (a few numbers: blocks per stage,
widths, the inverted-residual settings) from which the layer list is generated,
layer by layer with PyTorch's parameter shapes and torchvision's names:

    conv  weight (C_out, C_in / groups, kh, kw)      no bias (BN follows)
    bn    weight (C,), bias (C,)                     running statistics are buffers, not parameters
    fc    weight (out, in), bias (out,)

A network's count is the sum over that list; no total is typed in. Attention
modules sit at *sites* (one per block) and their counts come from the registry,
``VARIANTS[name].count_params(C, **hp)``.

Where the modules sit (GUIDE.md part 1; the authors' eca_resnet.py and eca_mobilenetv2.py):

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

from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_int, check_kernel

__all__ = [
    "Layer", "Site", "Architecture", "ResNetSpec", "MobileNetV2Spec", "NETWORKS", "get_network",
    "BlockCount", "NetworkCount", "network_params", "compare_network", "compare_variants",
    "PAPER_VARIANTS_TABLE", "PAPER_NETWORK_M", "UNIT", "to_M",
]

UNIT = 2 ** 20  # the paper's "M"


def to_M(n: int) -> float:
    """Parameters in the paper's unit of 2^20, rounded to 2 decimals (25,557,032 -> 24.37)."""
    return round(n / UNIT, 2)


# ------------------------------------------------------------------------- the paper's numbers
# The paper's SE-variants table (Table 2 of the CVPR 2020 version, Table 1 in some copies):
# ResNet-50 on ImageNet, Top-1 / Top-5 accuracy (%), as listed in GUIDE.md part 1. Keyed by
# (variant, groups spec); SE-GC1/2/3 are the grouped variant with G = 16, C/16, C/8 groups.
# The setting string says under which hyper-parameters the paper measured the row.
PAPER_VARIANTS_TABLE: dict[tuple[str, str | None], dict] = {
    ("none", None): {"name": "vanilla", "top1": 75.20, "top5": 92.25, "setting": ""},
    ("se", None): {"name": "SE", "top1": 76.71, "top5": 93.38, "setting": "r=16"},
    ("se-var1", None): {"name": "SE-Var1", "top1": 76.00, "top5": 92.90, "setting": ""},
    ("se-var2", None): {"name": "SE-Var2", "top1": 77.07, "top5": 93.31, "setting": ""},
    ("se-var3", None): {"name": "SE-Var3", "top1": 77.42, "top5": 93.64, "setting": ""},
    ("se-gc", "16"): {"name": "SE-GC1", "top1": 76.95, "top5": 93.47, "setting": "G=16"},
    ("se-gc", "C/16"): {"name": "SE-GC2", "top1": 76.98, "top5": 93.31, "setting": "G=C/16"},
    ("se-gc", "C/8"): {"name": "SE-GC3", "top1": 76.96, "top5": 93.38, "setting": "G=C/8"},
    ("eca-ns", None): {"name": "ECA-NS", "top1": 77.35, "top5": 93.61, "setting": "k=3"},
    ("eca", None): {"name": "ECA", "top1": 77.43, "top5": 93.65, "setting": "k=3"},
}

# The paper's backbone table (Table 3 of the CVPR version), parameters in units of 2^20:
# plain, + SE (r = 16 for ResNets, r = 8 for MobileNetV2, no FC bias), + ECA.
PAPER_NETWORK_M: dict[str, dict[str, float]] = {
    "resnet50": {"none": 24.37, "se": 26.77, "eca": 24.37},
    "resnet101": {"none": 42.49, "se": 47.01, "eca": 42.49},
    "resnet152": {"none": 57.40, "se": 63.68, "eca": 57.40},
    "mobilenetv2": {"none": 3.34, "se": 3.40, "eca": 3.34},
}

# Short names for labels (a variant missing here is shown by its registry name).
_DISPLAY = {"none": "plain", "se": "SE", "se-var1": "SE-Var1", "se-var2": "SE-Var2", "se-var3": "SE-Var3",
            "se-gc": "SE-GC", "eca-ns": "ECA-NS", "eca": "ECA", "eca-band": "ECA-band", "ceca": "CECA"}

# The paper's three grouped settings, in the order of its table.
_PAPER_GROUPS = ("16", "C/16", "C/8")


def _registry():
    from eca_ref.attention import VARIANTS, kernel_size
    return VARIANTS, kernel_size


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


def _parse_groups(groups):
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


def _groups_at(spec, C, where):
    """G at a block with C channels; InputError (naming the block) when G does not divide C."""
    if isinstance(spec, tuple):
        d = spec[1]
        if C % d:
            raise InputError(f"groups = C/{d} does not fit {where} (C = {C}): C is not divisible by {d}")
        return C // d
    if C % spec:
        raise InputError(f"groups = {spec} does not fit {where} (C = {C}): G must divide C")
    return spec


def _check_stage_k(stage_k, n_stages, network):
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
    VARIANTS, kernel_size = _registry()
    spec = get_network(network)
    v = VARIANTS[variant]
    if not isinstance(placement, str):
        raise InputTypeError(f"placement must be a string, got {placement!r}")
    arch = spec.describe(placement)
    takes = set(v.hp_defaults)

    r = spec.paper_reduction if reduction is None else check_int(reduction, "reduction", min_value=1)
    if not isinstance(bias, bool):
        raise InputTypeError(f"bias must be True or False, got {bias!r}")
    g_spec = _parse_groups(groups)
    if k is not None and stage_k is not None:
        raise InputError("give k (one kernel size for every block) or stage_k (one per stage), not both")
    if k is not None:
        k = check_kernel(k, "k")
    if stage_k is not None:
        stage_k = _check_stage_k(stage_k, arch.n_stages, spec.name)

    blocks = []
    for site in arch.sites:
        C = site.channels
        hp = {}
        if "r" in takes:
            hp["r"] = r
        if "bias" in takes:
            hp["bias"] = bias
        if "groups" in takes:
            hp["groups"] = _groups_at(g_spec, C, f"block {site.block} of {spec.name}")
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


# ------------------------------------------------------------------------- tables
def _paper(variant, gkey=None):
    return PAPER_VARIANTS_TABLE.get((variant, gkey))


def _gkey(groups):
    """The paper's key of a groups setting: "16", "C/16", "C/8" or None."""
    g = _parse_groups(groups)
    key = f"C/{g[1]}" if isinstance(g, tuple) else str(g)
    return key if key in _PAPER_GROUPS else None


def _row_settings(VARIANTS, *, reduction, groups, bias_rows):
    """(variant, hp overrides, groups key, label suffix, strict) per row, in registry order.

    strict rows (settings the caller asked for explicitly) raise when they do not fit;
    the others (the paper's fixed settings) are reported as not applicable.
    """
    rows = []
    for name, v in VARIANTS.items():
        takes = set(v.hp_defaults)
        if "r" in takes:
            r, strict = reduction
            for b in bias_rows:
                rows.append((name, {"reduction": r, "bias": b}, None,
                             f"r={r}" + (", FC bias" if b else ""), strict))
        elif "groups" in takes:
            if groups is not None:
                key = _gkey(groups)
                rows.append((name, {"groups": groups}, key, f"G={groups}", True))
            for g in _PAPER_GROUPS:
                if groups is not None and _gkey(groups) == g:
                    continue
                rows.append((name, {"groups": g if g.startswith("C/") else int(g)}, g, f"G={g}", False))
        else:
            rows.append((name, {}, None, "", True))
    return rows


def _label(name, gkey, suffix):
    paper = _paper(name, gkey) if name == "se-gc" else None
    base = paper["name"] if paper else _DISPLAY.get(name, name)
    return f"{base} ({suffix})" if suffix else base


def compare_variants(C, *, reduction: int | None = None, groups=None, k: int | None = None,
                     bias: bool = False) -> list[dict]:
    """Every variant's parameters for one module with C channels, beside the paper's table.

    Args:
        C: channels (>= 1).
        reduction: SE's r; None -> 16 (the paper's), shown as not applicable if it does not fit C.
            An explicit value must fit (else InputError).
        groups: SE-GC's G (int or "C/d"), an extra row beside the paper's G = 16, C/16, C/8
            (those are shown as not applicable where they do not divide C).
        k: kernel size of the k-variants; None -> Eq. 12, ``kernel_size(C)``.
        bias: SE's FC layers with biases.

    Returns:
        One dict per row: variant, label, formula (f(y)), param_formula (#Param), hp, params (int, or
        None when the setting does not fit C), top1 / top5 (the paper's ResNet-50 ImageNet accuracy
        for that variant, or None), paper_setting, note.

    Example:
        >>> [(r["label"], r["params"]) for r in compare_variants(256) if r["variant"] in ("se", "eca")]
        [('SE (r=16)', 8192), ('ECA (k=5)', 5)]
    """
    VARIANTS, kernel_size = _registry()
    C = check_int(C, "C (channels)", min_value=1)
    if reduction is not None:
        reduction = (check_int(reduction, "reduction", min_value=1), True)
    else:
        reduction = (16, False)
    if groups is not None:
        _parse_groups(groups)
    if k is not None:
        k = check_kernel(k, "k")
    if not isinstance(bias, bool):
        raise InputTypeError(f"bias must be True or False, got {bias!r}")

    out = []
    for name, over, gkey, suffix, strict in _row_settings(VARIANTS, reduction=reduction, groups=groups,
                                                           bias_rows=(bias,)):
        v = VARIANTS[name]
        takes = set(v.hp_defaults)
        hp, note = {}, None
        if "r" in takes:
            hp["r"] = over["reduction"]
        if "bias" in takes:
            hp["bias"] = over["bias"]
        if "k" in takes:
            hp["k"] = k if k is not None else kernel_size(C)
            suffix = f"k={hp['k']}"
        params = None
        try:
            if "groups" in takes:
                hp["groups"] = _groups_at(_parse_groups(over["groups"]), C, "the module")
            params = v.count_params(C, **hp)
        except InputError as exc:
            if strict:
                raise InputError(f"{name}: {exc}") from None
            note = f"n/a: {exc}"
        paper = _paper(name, gkey) if name == "se-gc" else _paper(name)
        out.append({
            "C": C, "variant": name, "label": _label(name, gkey, suffix),
            "formula": v.formula, "param_formula": v.param_formula, "hp": hp, "params": params,
            "top1": paper["top1"] if paper else None, "top5": paper["top5"] if paper else None,
            "paper_setting": paper["setting"] if paper else None, "note": note,
        })
    return out


def compare_network(network, *, reduction: int | None = None, groups=None, k: int | None = None,
                    stage_k=None, placement: str = "output") -> list[dict]:
    """A network's total for plain and every variant, in exact integers and in units of 2^20.

    Rows, in registry order: plain; SE with and without FC biases; SE-Var1/2/3; SE-GC with
    G = 16, C/16, C/8 (and ``groups`` if given); and each k-variant (eca-ns, eca, eca-band, ceca)
    three times: k by Eq. 12 per block, k fixed (``k``, default 3, the paper's variants table),
    and one k per stage (``stage_k``, default the authors' released kernels, 3,5,5,7 for ResNet-50).

    Args:
        network: "resnet50", "resnet101", "resnet152" or "mobilenetv2".
        reduction: SE's r; None -> the paper's (16 for ResNets, 8 for MobileNetV2).
        groups: an extra SE-GC row with this G (int or "C/d"); must fit every block.
        k: the fixed kernel size row (default 3); must fit every block.
        stage_k: kernel sizes per stage (default: the authors' released ones).
        placement: see :func:`network_params`.

    Returns:
        One dict per row: network, variant, label, hp, params, params_added, M (params / 2^20,
        2 decimals), paper_M (the paper's Table 3 value for this row, or None; rows of the paper's
        configuration only: plain, SE with the paper's r and no FC bias, ECA with the authors'
        kernels, modules on the block outputs) and note. Rows
        whose fixed paper setting does not fit some block (e.g. G = 16 on MobileNetV2's 24
        channels) have params, params_added and M None and say why in note.

    Example:
        >>> rows = compare_network("resnet50")
        >>> [(r["label"], r["params_added"], r["M"]) for r in rows if r["variant"] == "eca"]
        [('ECA (k by Eq. 12: 5,5,5,7)', 86, 24.37), ('ECA (k=3)', 48, 24.37), ("ECA (authors' k: 3,5,5,7)", 80, 24.37)]
    """
    VARIANTS, _ = _registry()
    spec = get_network(network)
    arch = spec.describe(placement)
    explicit_r = reduction is not None
    r = check_int(reduction, "reduction", min_value=1) if explicit_r else spec.paper_reduction
    if groups is not None:
        _parse_groups(groups)
    k_fixed = check_kernel(k, "k") if k is not None else 3
    authors = stage_k is None
    stage_k = spec.authors_stage_k if authors else _check_stage_k(stage_k, arch.n_stages, spec.name)
    # the paper's Table 3 values belong to its configuration: modules on the block outputs
    paper_M = PAPER_NETWORK_M.get(spec.name, {}) if placement == "output" else {}

    plans = []  # (variant, kwargs, label, strict, paper key)
    for name, over, gkey, suffix, strict in _row_settings(VARIANTS, reduction=(r, explicit_r), groups=groups,
                                                           bias_rows=(False, True)):
        takes = set(VARIANTS[name].hp_defaults)
        if "k" in takes:
            disp = _DISPLAY.get(name, name)
            plans.append((name, {}, f"{disp} (k by Eq. 12: {{k}})", True, None))
            plans.append((name, {"k": k_fixed}, f"{disp} (k={k_fixed})", k is not None, None))
            who = "authors' k" if authors else "k per stage"
            plans.append((name, {"stage_k": stage_k}, f"{disp} ({who}: {','.join(map(str, stage_k))})", True,
                          "eca" if (name == "eca" and authors) else None))
        else:
            kw = dict(over)
            pkey = None
            if name == "none":
                pkey = "none"
            elif name == "se" and not over["bias"] and r == spec.paper_reduction:
                pkey = "se"
            plans.append((name, kw, _label(name, gkey, suffix) if name != "none" else f"{spec.title} (plain)",
                          strict, pkey))

    rows = []
    for name, kw, label, strict, pkey in plans:
        note = None
        try:
            c = network_params(spec.name, name, placement=placement, **kw)
        except InputError as exc:
            if strict:
                raise
            c = None
            note = f"n/a: {exc}"
        if c is not None and "{k}" in label:
            label = label.replace("{k}", ",".join("/".join(map(str, x)) if isinstance(x, list) else str(x)
                                                  for x in c.stage_hp("k")))
        hp = {("r" if key == "reduction" else key): val for key, val in kw.items()}
        if "stage_k" in hp:
            hp["stage_k"] = list(hp["stage_k"])
        if "k" in set(VARIANTS[name].hp_defaults) and not hp:
            hp["k"] = "eq12"
        rows.append({
            "network": spec.name, "variant": name, "label": label.replace("{k}", "Eq. 12"), "hp": hp,
            "params": c.total if c else None, "params_added": c.added if c else None,
            "M": c.M if c else None, "paper_M": paper_M.get(pkey) if pkey else None, "note": note,
        })
    return rows
