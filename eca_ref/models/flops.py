"""Multiply-accumulates (MACs) of the paper's networks and of the CIFAR net, layer by layer.

Counted from the same architecture descriptions as the parameters
(:mod:`eca_ref.models.architectures`), for one image of H x W (224 x 224 for the
paper's networks, 32 x 32 for the CIFAR net):

* conv: output elements x (C_in / groups) x kh x kw;  fc: n_in x n_out;
* the attention module's f: one MAC per weight it applies to y (SE: 2 C^2 / r; SE-Var3: C^2;
  SE-GC: C^2 / G; SE-Var2: C), and k per channel for the kernels that slide over the channels
  (ECA, ECA-band, CECA: k C, the 1D convolution of length C with zero padding, as
  ``nn.Conv1d`` computes it; ECA-NS: k C).

Everything else is listed separately, as element counts, because the counting tools disagree
on it (see :data:`CONVENTIONS`): batch norm, ReLU, max pooling, the head's global average
pooling, the residual additions, the FC biases, and the attention module's own GAP (C H W
additions), sigmoid (C) and rescale (C H W multiplications).

A MAC is one multiply and one add: "FLOPs" are 2 MACs by the textbook convention, but most
tools, and the paper, print MACs and call them FLOPs. The paper's "G" is 2^30 (its script
divides by 1024^3), like its "M" of parameters (2^20).

>>> c = network_flops("resnet50")
>>> c.backbone_macs, c.attention_macs
(4089184256, 0)
>>> network_flops("resnet50", "eca", stage_k=(3, 5, 5, 7)).attention_macs     # the 1D convolutions
86272
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from eca_ref.attention import VARIANTS
from eca_ref.errors import InputError
from eca_ref.models.architectures import Architecture, Layer, Site, bn, conv, fc, get_network, op
from eca_ref.models.networks import network_params
from eca_ref.models.resnet_spec import IN_CHANNELS, ResNetConfig, block_specs
from eca_ref.validation import check_int

__all__ = ["FlopCount", "network_flops", "cifar_flops", "module_flops", "cifar_architecture", "layer_macs",
           "f_macs", "CONVENTIONS", "convention_total", "G2", "SLIDING"]

G2 = 2 ** 30          # the paper's "G" (its script: thop's count / 1024 ** 3)
SLIDING = ("eca", "eca-band", "ceca")   # f slides k shared weights over the C channels: k C MACs


def out_hw(H: int, W: int, scale: int) -> tuple[int, int]:
    """The map of a layer at ``scale`` on an H x W input: each stride 2 gives ceil(H / 2)."""
    return -(-H // scale), -(-W // scale)


def layer_macs(layer: Layer, H: int, W: int) -> int:
    """MACs of one conv or fc layer (0 for BN): output elements x weights per output."""
    if layer.kind == "conv":
        c_out, c_in_per_group, kh, kw = layer.shapes[0]
        h, w = out_hw(H, W, layer.scale)
        return c_out * h * w * c_in_per_group * kh * kw
    if layer.kind == "fc":
        return math.prod(layer.shapes[0])
    return 0


def f_macs(variant: str, C: int, hp: dict) -> int:
    """MACs of the attention module's f on a vector y of C channels (see the module docstring)."""
    v = VARIANTS[variant]
    if variant in SLIDING or variant == "eca-ns":
        return hp["k"] * C
    shapes = v.param_shapes(C, **hp) if v.hp_defaults or variant != "none" else {}
    return sum(math.prod(s) for name, s in shapes.items() if not name.startswith("b"))


def f_linears(variant: str, C: int, hp: dict) -> list:
    """The nn.Linear layers (n_in, n_out) of f where the authors' code has them (SE, SE-Var3)."""
    if variant == "se":
        h = VARIANTS["se"].resolve_hp(C, **hp)["hidden"]
        return [(C, h), (h, C)]
    if variant == "se-var3":
        return [(C, C)]
    return []


@dataclass(frozen=True)
class FlopCount:
    """A network's multiply-accumulates for one image, and the element counts beside them.

    backbone_macs: conv and fc layers of the plain network; attention_macs: the f of every
    module (what the attention adds in MACs); other: element counts that a tool may or may not
    count (keys: bn, relu, maxpool (output elements x window^2), maxpool_in, gap (the head's input, a
    module), mean (the same by a function call: MobileNetV2), add,
    fc_bias, attn_gap (C H W per module), attn_sigmoid (C), attn_scale (C H W), attn_relu (SE's
    hidden units), attn_bias (SE's FC biases, if any)).
    """

    network: str
    variant: str
    H: int
    W: int
    backbone_macs: int
    attention_macs: int
    other: dict
    per_layer: tuple = field(repr=False, default=())   # (name, MACs) of every conv and fc layer
    linears: tuple = field(repr=False, default=())     # (n_in, n_out) of every nn.Linear of the modules
    fc: tuple = field(repr=False, default=(0, 0))      # (n_in, n_out) of the classifier

    @property
    def macs(self) -> int:
        return self.backbone_macs + self.attention_macs


def _count(arch: Architecture, variant: str, hps: list, H: int, W: int, network: str) -> FlopCount:
    """The counts of an architecture with one module of ``variant`` per site (hps: one hp dict per site)."""
    per_layer = tuple((layer.name, layer_macs(layer, H, W)) for layer in arch.layers if layer.kind != "bn")
    other = dict.fromkeys(("bn", "relu", "maxpool", "maxpool_in", "gap", "mean", "add", "fc_bias", "attn_gap", "attn_sigmoid",
                           "attn_scale", "attn_relu", "attn_bias"), 0)
    fc_layer = None
    for layer in arch.layers:
        if layer.kind == "bn":
            h, w = out_hw(H, W, layer.scale)
            other["bn"] += layer.shapes[0][0] * h * w
        elif layer.kind == "fc":
            fc_layer = layer
            other["fc_bias"] += layer.shapes[1][0]
    for o in arch.ops:
        h, w = out_hw(H, W, o.scale)
        other[o.kind] += o.channels * h * w * o.window ** 2
        if o.kind == "maxpool":                       # its input, at half the stride
            other["maxpool_in"] += o.channels * math.prod(out_hw(H, W, o.scale // 2))
    f_total, linears = 0, []
    if variant != "none":
        for site, hp in zip(arch.sites, hps):
            C = site.channels
            h, w = out_hw(H, W, site.scale)
            f_total += f_macs(variant, C, hp)
            linears += f_linears(variant, C, hp)
            other["attn_gap"] += C * h * w
            other["attn_sigmoid"] += C
            other["attn_scale"] += C * h * w
            if variant == "se":
                hidden = VARIANTS["se"].resolve_hp(C, **hp)["hidden"]
                other["attn_relu"] += hidden
                other["attn_bias"] += (hidden + C) if hp.get("bias") else 0
    n_in, n_out = fc_layer.shapes[0][1], fc_layer.shapes[0][0]
    return FlopCount(network, variant, H, W, sum(m for _, m in per_layer), f_total, other, per_layer,
                     tuple(linears), (n_in, n_out))


def _check_hw(H, W):
    H = check_int(H, "H (image height)", min_value=1)
    return H, check_int(H if W is None else W, "W (image width)", min_value=1)


def network_flops(network, variant: str = "none", *, H: int = 224, W: int | None = None, **kw) -> FlopCount:
    """MACs of one of the paper's networks with one module per block, for one H x W image.

    ``kw``: the settings of :func:`eca_ref.models.networks.network_params` (reduction, bias,
    groups, k, stage_k, placement); the modules' hyper-parameters are resolved there.
    """
    H, W = _check_hw(H, W)
    count = network_params(network, variant, **kw)
    arch = get_network(network).describe(count.placement)
    return _count(arch, variant, [b.hp for b in count.per_block], H, W, count.network)


def cifar_architecture(cfg: ResNetConfig) -> Architecture:
    """The CIFAR net (:mod:`eca_ref.models.resnet`) as an architecture description, with its names.

    stem: conv 3x3 (3 -> w) + BN + ReLU; basic blocks: conv 3x3 (stride s) + BN + ReLU, conv 3x3
    + BN, attention, + shortcut (identity, or 1x1 conv stride s + BN), ReLU; GAP; fc.
    """
    w = cfg.width
    layers = [conv("stem.conv", IN_CHANNELS, w, 3), bn("stem.bn", w)]
    ops = [op("stem.relu", "relu", w, 1)]
    sites, scale = [], 1
    for spec in block_specs(cfg):
        p, scale = spec.name, scale * spec.stride
        layers += [conv(f"{p}.conv1", spec.cin, spec.cout, 3, scale=scale), bn(f"{p}.bn1", spec.cout, scale),
                   conv(f"{p}.conv2", spec.cout, spec.cout, 3, scale=scale), bn(f"{p}.bn2", spec.cout, scale)]
        if spec.projection:
            layers += [conv(f"{p}.shortcut.conv", spec.cin, spec.cout, 1, scale=scale),
                       bn(f"{p}.shortcut.bn", spec.cout, scale)]
        ops += [op(f"{p}.relu1", "relu", spec.cout, scale), op(f"{p}.add", "add", spec.cout, scale),
                op(f"{p}.relu2", "relu", spec.cout, scale)]
        sites.append(Site(p, int(p[5]) - 1, spec.cout, f"{p}.bn2", scale))
    ops.append(op("gap", "gap", 4 * w, scale))
    layers.append(fc("fc", 4 * w, cfg.num_classes))
    return Architecture(f"cifar-resnet{cfg.depth}-w{w}", tuple(layers), tuple(sites), 3, tuple(ops))


def cifar_flops(cfg: ResNetConfig, *, H: int = 32, W: int | None = None) -> FlopCount:
    """MACs of the CIFAR net of ``cfg`` for one H x W image (32 x 32 by default)."""
    H, W = _check_hw(H, W)
    arch = cifar_architecture(cfg)
    return _count(arch, cfg.attention, [s.attn_hp for s in block_specs(cfg)], H, W, arch.name)


def module_flops(variant: str, C: int, H: int, W: int | None = None, **hp) -> dict:
    """One module on a (C, H, W) map: f's MACs and the element counts of its GAP, sigmoid, rescale."""
    C = check_int(C, "C (channels)", min_value=1)
    H, W = _check_hw(H, W)
    v = VARIANTS[variant]
    if variant == "none":
        return {"f": 0, "gap": 0, "sigmoid": 0, "scale": 0}
    try:
        resolved = v.resolve_hp(C, **hp)
    except InputError as exc:
        raise InputError(f"{variant}: {exc}") from None
    given = {key: resolved[key] for key in v.hp_defaults if key in resolved}
    return {"f": f_macs(variant, C, given), "gap": C * H * W, "sigmoid": C, "scale": C * H * W}


# ------------------------------------------------------------------------- the tools' conventions
def _linear_2019(n_in: int, n_out: int) -> int:
    """thop 2019's nn.Linear: n_in multiplications and n_in - 1 additions per output."""
    return (2 * n_in - 1) * n_out


def _thop_2019(c: FlopCount) -> int:
    o = c.other
    linears = [c.fc, *c.linears]
    macs = c.macs - sum(i * j for i, j in linears) + sum(_linear_2019(i, j) for i, j in linears)
    # adaptive average pooling: (H W + 1) per output, in the head and in each module
    pools = o["gap"] + _gap_outputs(c) + o["attn_gap"] + o["attn_sigmoid"]
    return macs + 4 * o["bn"] + o["relu"] + o["maxpool"] + pools + o["attn_relu"]


def _gap_outputs(c: FlopCount) -> int:
    """The "+1" (a division per output) of thop's nn.AdaptiveAvgPool2d in the head (none for a function call)."""
    return c.fc[0] if c.other["gap"] else 0


def _thop_new(c: FlopCount) -> int:
    o = c.other
    return c.macs + 4 * o["bn"] + o["gap"] + _gap_outputs(c) + o["attn_gap"] + o["attn_sigmoid"]


def _fvcore(c: FlopCount) -> int:
    o = c.other
    return c.macs + 2 * o["bn"] + o["gap"] + o["mean"] + o["attn_gap"]


def _ptflops(c: FlopCount) -> int:
    o = c.other
    return (c.macs + 2 * o["bn"] + o["relu"] + o["maxpool_in"] + o["gap"] + o["fc_bias"]
            + o["attn_gap"] + o["attn_relu"] + o["attn_bias"])


# name -> (what it counts, function of a FlopCount)
CONVENTIONS = {
    "macs": ("conv + fc + the modules' f, multiply-accumulates (this package's count)", lambda c: c.macs),
    "flops": ("2 x macs: a multiply and an add counted apart", lambda c: 2 * c.macs),
    "thop-2019": ("thop of 2019 (count_hooks.py; the authors' paras_flops.py): conv MACs, Linear "
                  "(2 n_in - 1) n_out, BN 4 n, ReLU n per call, max pool 9 n_out, adaptive average pool "
                  "(H W + 1) C; no sigmoid, no residual add, no rescale", _thop_2019),
    "thop": ("thop 0.1 (vision/basic_hooks.py): conv and Linear MACs, BN 4 n (2 n, x2 affine), adaptive "
             "average pool (H W + 1) C; ReLU and max pool 0; no sigmoid, add, rescale", _thop_new),
    "fvcore": ("fvcore FlopCountAnalysis: conv and linear MACs (one fused multiply-add = one flop), "
               "batch_norm 2 n in eval mode, adaptive_avg_pool2d n_in; element-wise ops (ReLU, add, "
               "sigmoid, mul) and max pool ignored", _fvcore),
    "ptflops": ("ptflops (pytorch backend, module hooks): conv MACs, Linear MACs + bias, BN 2 n, ReLU n, "
                "pooling n_in; no sigmoid, add, rescale (functional calls)", _ptflops),
}


def convention_total(c: FlopCount, name: str) -> int:
    """The number a convention (a tool) reports for this network (one image)."""
    if name not in CONVENTIONS:
        raise InputError(f"convention must be one of {', '.join(CONVENTIONS)}, got {name!r}")
    return int(CONVENTIONS[name][1](c))
