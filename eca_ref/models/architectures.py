"""The paper's networks as *architecture descriptions*: layer lists generated from a few numbers.

Every network (ResNet-50/101/152, MobileNetV2; torchvision's layouts and names) is described by
the layers that carry parameters, with PyTorch's parameter shapes,

    conv  weight (C_out, C_in / groups, kh, kw)      no bias (BN follows)
    bn    weight (C,), bias (C,)                     running statistics are buffers, not parameters
    fc    weight (out, in), bias (out,)

plus what the counts of computation need and the parameters do not:

* each layer's *scale*, the stride of its output relative to the input image (the output of a
  layer at scale s on an H x W image is ceil(H / s) x ceil(W / s): every stride-2 layer of these
  networks, 7x7/3x3 with padding 3/1 and 1x1 with padding 0, gives ceil(H / 2));
* the parameter-free operations (:class:`Op`): ReLU, max pooling, global average pooling and the
  residual additions, each with its channels and scale;
* the attention *sites*, one per block, with their channels and scale.

Parameter counts: :mod:`eca_ref.models.networks`; multiply-accumulates: :mod:`eca_ref.models.flops`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from eca_ref.errors import InputError, InputTypeError

__all__ = ["Layer", "Op", "Site", "Architecture", "ResNetSpec", "MobileNetV2Spec", "NETWORKS", "get_network",
           "network_key",
           "conv", "bn", "fc", "op"]

# ------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layer:
    """One layer with parameters: its torchvision name, kind, parameter shapes and output scale."""

    name: str                          # e.g. "layer1.0.conv1" (the state-dict prefix)
    kind: str                          # "conv" | "bn" | "fc"
    shapes: tuple[tuple[int, ...], ...]  # (weight shape[, bias shape])
    scale: int = 1                     # output stride relative to the input image (fc: the whole image)

    @property
    def params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def conv(name: str, c_in: int, c_out: int, k: int, groups: int = 1, scale: int = 1) -> Layer:
    """A bias-free k x k convolution (a BN follows): weight (c_out, c_in // groups, k, k)."""
    return Layer(name, "conv", ((c_out, c_in // groups, k, k),), scale)


def bn(name: str, c: int, scale: int = 1) -> Layer:
    """BatchNorm2d: weight (c,) and bias (c,)."""
    return Layer(name, "bn", ((c,), (c,)), scale)


def fc(name: str, n_in: int, n_out: int) -> Layer:
    """Linear with bias: weight (n_out, n_in), bias (n_out,)."""
    return Layer(name, "fc", ((n_out, n_in), (n_out,)))


@dataclass(frozen=True)
class Op:
    """A parameter-free operation on a (channels, H / scale, W / scale) map.

    kind: "relu" (ReLU or ReLU6), "maxpool" (window x window, its output at ``scale``), "gap"
    (global average pooling of the map at ``scale`` by a module, nn.AdaptiveAvgPool2d), "mean" (the
    same by a function call, which module hooks do not see) or "add" (the residual addition).
    """

    name: str
    kind: str
    channels: int
    scale: int
    window: int = 1


def op(name: str, kind: str, channels: int, scale: int, window: int = 1) -> Op:
    return Op(name, kind, channels, scale, window)


@dataclass(frozen=True)
class Site:
    """Where one attention module goes: a block, its stage, its channel count and scale."""

    block: str      # e.g. "layer1.0" or "features.3"
    stage: int      # 0-based stage index
    channels: int   # C of the module
    after: str      # the layer it follows, e.g. "layer1.0.bn3"
    scale: int = 1  # the module's map is C x ceil(H / scale) x ceil(W / scale)


@dataclass(frozen=True)
class Architecture:
    """A network as a flat list of layers plus the parameter-free operations and the attention sites."""

    name: str
    layers: tuple[Layer, ...]
    sites: tuple[Site, ...]
    n_stages: int
    ops: tuple[Op, ...] = ()

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
        layers = [conv("conv1", self.in_channels, self.stem, 7, scale=2), bn("bn1", self.stem, 2)]
        ops = [op("relu", "relu", self.stem, 2), op("maxpool", "maxpool", self.stem, 4, window=3)]
        sites = []
        inplanes, sc = self.stem, 4
        for s, (n, w) in enumerate(zip(self.blocks, self.widths)):
            out = w * self.expansion
            stride = 1 if s == 0 else 2
            for b in range(n):
                p = f"layer{s + 1}.{b}"
                c_in = inplanes if b == 0 else out
                s_in = sc                                   # conv1 runs before the stride (torchvision's v1.5)
                if b == 0:
                    sc *= stride
                layers += [conv(f"{p}.conv1", c_in, w, 1, scale=s_in), bn(f"{p}.bn1", w, s_in),
                           conv(f"{p}.conv2", w, w, 3, scale=sc), bn(f"{p}.bn2", w, sc),
                           conv(f"{p}.conv3", w, out, 1, scale=sc), bn(f"{p}.bn3", out, sc)]
                if b == 0 and (stride != 1 or c_in != out):
                    layers += [conv(f"{p}.downsample.0", c_in, out, 1, scale=sc), bn(f"{p}.downsample.1", out, sc)]
                ops += [op(f"{p}.relu(1)", "relu", w, s_in), op(f"{p}.relu(2)", "relu", w, sc),
                        op(f"{p}.add", "add", out, sc), op(f"{p}.relu(3)", "relu", out, sc)]
                sites.append(Site(p, s, out, f"{p}.bn3", sc))
            inplanes = out
        ops.append(op("avgpool", "gap", inplanes, sc))
        layers.append(fc("fc", inplanes, self.num_classes))
        return Architecture(self.name, tuple(layers), tuple(sites), len(self.blocks), tuple(ops))


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
        layers = [conv("features.0.0", self.in_channels, self.stem, 3, scale=2), bn("features.0.1", self.stem, 2)]
        ops = [op("features.0.2", "relu", self.stem, 2)]
        sites = []
        c_in, idx, sc = self.stem, 1, 2
        for s, (t, c, n, stride) in enumerate(self.settings):
            for i in range(n):
                hidden = int(round(c_in * t))
                p, j = f"features.{idx}.conv", 0
                s_in, sc = sc, sc * (stride if i == 0 else 1)     # the depthwise conv carries the stride
                if t != 1:
                    layers += [conv(f"{p}.{j}.0", c_in, hidden, 1, scale=s_in), bn(f"{p}.{j}.1", hidden, s_in)]
                    ops.append(op(f"{p}.{j}.2", "relu", hidden, s_in))
                    j += 1
                layers += [conv(f"{p}.{j}.0", hidden, hidden, 3, groups=hidden, scale=sc),
                           bn(f"{p}.{j}.1", hidden, sc)]
                ops.append(op(f"{p}.{j}.2", "relu", hidden, sc))
                dw_bn = f"{p}.{j}.1"
                layers += [conv(f"{p}.{j + 1}", hidden, c, 1, scale=sc), bn(f"{p}.{j + 2}", c, sc)]
                if s_in == sc and c_in == c:
                    ops.append(op(f"features.{idx}.add", "add", c, sc))
                if placement == "output":
                    sites.append(Site(f"features.{idx}", s, c, f"{p}.{j + 2}", sc))
                else:
                    sites.append(Site(f"features.{idx}", s, hidden, dw_bn, sc))
                c_in, idx = c, idx + 1
        layers += [conv(f"features.{idx}.0", c_in, self.last, 1, scale=sc), bn(f"features.{idx}.1", self.last, sc)]
        ops += [op(f"features.{idx}.2", "relu", self.last, sc), op("adaptive_avg_pool2d", "mean", self.last, sc)]
        layers.append(fc("classifier.1", self.last, self.num_classes))
        return Architecture(self.name, tuple(layers), tuple(sites), len(self.settings), tuple(ops))


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


def network_key(name: str) -> str:
    """A network's name as looked up: case, '-', '_' and spaces ignored ('ResNet-50' -> 'resnet50')."""
    return re.sub(r"[-_\s]", "", name.lower())


def get_network(network):
    """The spec of a network by name (case, '-' and '_' ignored: 'ResNet-50' works)."""
    if not isinstance(network, str):
        raise InputTypeError(f"network must be a string, one of {', '.join(NETWORKS)}; got {network!r}")
    key = network_key(network)
    if key not in NETWORKS:
        raise InputError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    return NETWORKS[key]
