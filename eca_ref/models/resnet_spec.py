"""The tiny CIFAR ResNet's shape: its config, its blocks, its parameters and their initialisation.

The network, drawn stage by stage: :mod:`eca_ref.models.resnet`. ECA's k is chosen per block from
its channels (``kernel_size(C)``) unless ``ResNetConfig.k`` fixes it.

Parameters and buffers are flat dicts with PyTorch-style dotted names ("stage2.block0.conv1.weight",
"stage2.block0.bn1.running_mean", "stage1.block0.attn.w", "fc.bias"), so a checkpoint is just a
dict of arrays. Nothing is mutated: the forward pass returns the new BN running statistics.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from eca_ref.attention import VARIANTS, kernel_size
from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_int

__all__ = ["ResNetConfig", "BlockSpec", "CONV_INITS", "block_specs", "init_resnet", "decay_keys", "count_parameters",
           "param_shapes", "buffer_shapes", "IN_CHANNELS"]

IN_CHANNELS = 3
MAX_DEPTH = 1202   # ResNet-1202, the deepest CIFAR ResNet of He et al. (2016)


@dataclass(frozen=True)
class ResNetConfig:
    """The network's shape. Checked on creation (bad values raise InputError / InputTypeError).

    Attributes:
        depth: 6n + 2 layers with weights (n >= 1 blocks per stage): 8, 14, 20, 32, ..., at most 1202.
        width: channels of the first stage (w); the stages have w, 2w, 4w.
        attention: a name of the registry ``eca_ref.attention.VARIANTS`` ("none", "se", "eca", ...).
        k: ECA's kernel size for every block (odd), or None for ``kernel_size(C)`` per block.
            Only for the variants with a kernel (eca, eca-ns, eca-band, ceca).
        num_classes: outputs of the classifier.
    """

    depth: int = 8
    width: int = 16
    attention: str = "eca"
    k: int | None = None
    num_classes: int = 10

    def __post_init__(self):
        depth = check_int(self.depth, "depth", min_value=8, max_value=MAX_DEPTH)
        if (depth - 2) % 6:
            raise InputError(f"depth must be of the form 6n + 2 (8, 14, 20, 26, 32, ...), got {depth}")
        check_int(self.width, "width", min_value=1)
        check_int(self.num_classes, "num_classes", min_value=2)
        if not isinstance(self.attention, str):
            raise InputTypeError(f"attention must be a variant name (str), got {type(self.attention).__name__}")
        v = VARIANTS[self.attention]  # unknown names raise, listing the known ones
        if self.k is not None:
            k = check_int(self.k, "k", min_value=1)
            if k % 2 == 0:
                raise InputError(f"k must be odd (the kernel is centred on each channel), got {k}")
            if "k" not in v.hp_defaults:
                with_k = ", ".join(name for name, var in VARIANTS.items() if "k" in var.hp_defaults)
                raise InputError(f"k applies only to the variants with a kernel ({with_k}); "
                                 f"attention {self.attention!r} has none")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6


class BlockSpec(NamedTuple):
    name: str          # "stage2.block0"
    cin: int
    cout: int
    stride: int
    projection: bool   # 1x1 conv + BN shortcut
    attn_hp: dict      # hyper-parameters of the attention module ({} for "none")


def _attention_hp(cfg: ResNetConfig, C: int) -> dict:
    """The attention module's hyper-parameters for a block of C channels."""
    v = VARIANTS[cfg.attention]
    hp = {}
    if "k" in v.hp_defaults:
        hp["k"] = cfg.k if cfg.k is not None else kernel_size(C)
    if "r" in v.hp_defaults:  # SE: reduction 16, but at least one hidden unit on narrow nets
        hp["r"] = min(v.hp_defaults["r"], C)
    if "groups" in v.hp_defaults:  # SE-GC: 16 groups where they divide C
        hp["groups"] = math.gcd(v.hp_defaults["groups"], C)
    return hp


@functools.lru_cache(maxsize=64)
def block_specs(cfg: ResNetConfig) -> tuple:
    """The blocks of the network, in order: a tuple of :class:`BlockSpec`."""
    specs = []
    cin = cfg.width
    for s in range(3):
        cout = cfg.width * 2 ** s
        for b in range(cfg.blocks_per_stage):
            stride = 2 if (s > 0 and b == 0) else 1
            specs.append(BlockSpec(f"stage{s + 1}.block{b}", cin, cout, stride, stride != 1 or cin != cout,
                                   _attention_hp(cfg, cout)))
            cin = cout
    return tuple(specs)


@functools.lru_cache(maxsize=64)
def _shapes(cfg: ResNetConfig):
    v = VARIANTS[cfg.attention]
    w = cfg.width
    params, buffers = {}, {}

    def bn(prefix, C):
        params[prefix + ".weight"] = (C,)
        params[prefix + ".bias"] = (C,)
        buffers[prefix + ".running_mean"] = (C,)
        buffers[prefix + ".running_var"] = (C,)

    params["stem.conv.weight"] = (w, IN_CHANNELS, 3, 3)
    bn("stem.bn", w)
    for spec in block_specs(cfg):
        p = spec.name
        params[p + ".conv1.weight"] = (spec.cout, spec.cin, 3, 3)
        bn(p + ".bn1", spec.cout)
        params[p + ".conv2.weight"] = (spec.cout, spec.cout, 3, 3)
        bn(p + ".bn2", spec.cout)
        if cfg.attention != "none":
            for name, shape in v.param_shapes(spec.cout, **spec.attn_hp).items():
                params[f"{p}.attn.{name}"] = tuple(shape)
        if spec.projection:
            params[p + ".shortcut.conv.weight"] = (spec.cout, spec.cin, 1, 1)
            bn(p + ".shortcut.bn", spec.cout)
    params["fc.weight"] = (cfg.num_classes, 4 * w)
    params["fc.bias"] = (cfg.num_classes,)
    return params, buffers


def param_shapes(cfg: ResNetConfig) -> dict:
    """{name: shape} of every parameter, in initialisation order."""
    return dict(_shapes(cfg)[0])


def buffer_shapes(cfg: ResNetConfig) -> dict:
    """{name: shape} of the BN running statistics."""
    return dict(_shapes(cfg)[1])


CONV_INITS = ("kaiming", "pytorch")   # init_resnet(init=...): how the conv weights are drawn


def init_resnet(cfg: ResNetConfig, rng: numpy.random.Generator, dtype=numpy.float32, *,
                zero_init_residual: bool = False, init: str = "kaiming"):
    """Fresh parameters and buffers, initialised like torchvision's and the CIFAR ResNets':

    conv weights Kaiming normal (fan_out, ReLU gain): std = sqrt(2 / (F kh kw)); BN weight 1,
    bias 0, running mean 0, running var 1; linear weight and bias uniform(-1/sqrt(in), 1/sqrt(in))
    (PyTorch's default); attention parameters by the variant's ``init_params``. Parameters are drawn
    from ``rng`` in the order of :func:`param_shapes`, so one seed gives one network.

    init: "kaiming" (the above) or "pytorch": conv weights as PyTorch's ``Conv2d`` draws them by
    default, ``kaiming_uniform_(a=sqrt(5))`` = uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    fan_in = C kh kw, a standard deviation 1/sqrt(3 fan_in): 2.4 times smaller than "kaiming" for a
    3x3 conv with as many channels in as out. Behind a batch norm the scale of a conv's weights does
    not change the function, but smaller weights take larger relative steps (docs/results.md, "The
    trainer against PyTorch's"). Everything else is drawn as with "kaiming".

    zero_init_residual: every block's second BN weight (gamma) starts at 0 instead of 1, so the
    residual branch outputs 0 and each block starts as its shortcut (Goyal et al., 2017;
    torchvision's ``zero_init_residual``). The random draws are the same either way.

    Returns:
        (params, buffers): two flat dicts of arrays with dotted names.
    """
    xp = get_xp()
    if not isinstance(cfg, ResNetConfig):
        raise InputTypeError(f"cfg must be a ResNetConfig, got {type(cfg).__name__}")
    if not isinstance(rng, numpy.random.Generator):
        raise InputTypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise InputTypeError(f"dtype must be float32 or float64, got {dtype}")
    if not isinstance(zero_init_residual, bool):
        raise InputTypeError(f"zero_init_residual must be a bool, got {type(zero_init_residual).__name__}")
    if init not in CONV_INITS:
        raise InputError(f"init must be one of {', '.join(CONV_INITS)}, got {init!r}")
    v = VARIANTS[cfg.attention]
    pshapes, bshapes = _shapes(cfg)
    specs = {s.name: s for s in block_specs(cfg)}
    params = {}
    done_attn = set()
    for name, shape in pshapes.items():
        if ".attn." in name:
            block = name.split(".attn.")[0]
            if block not in done_attn:
                done_attn.add(block)
                for key, a in v.init_params(specs[block].cout, rng=rng, dtype=dtype,
                                            **specs[block].attn_hp).items():
                    params[f"{block}.attn.{key}"] = xp.asarray(a)
            continue
        kind = _layer_of(name)
        if kind.startswith("conv"):
            F, C, kh, kw = shape
            if init == "kaiming":
                a = rng.standard_normal(shape) * math.sqrt(2.0 / (F * kh * kw))    # fan_out, ReLU gain
            else:
                bound = 1.0 / math.sqrt(C * kh * kw)                              # PyTorch's Conv2d default
                a = rng.uniform(-bound, bound, size=shape)
        elif kind == "fc":
            bound = 1.0 / math.sqrt(pshapes["fc.weight"][1])
            a = rng.uniform(-bound, bound, size=shape)
        elif name.endswith(".weight"):  # BN gamma
            a = numpy.zeros(shape) if zero_init_residual and _layer_of(name) == "bn2" else numpy.ones(shape)
        else:  # BN beta
            a = numpy.zeros(shape)
        params[name] = xp.asarray(a.astype(dtype))
    params = {name: params[name] for name in pshapes}  # one fixed order
    buffers = {name: xp.asarray((numpy.ones if name.endswith("running_var") else numpy.zeros)(shape, dtype=dtype))
               for name, shape in bshapes.items()}
    return params, buffers


def _layer_of(name: str) -> str:
    """The layer a parameter belongs to: "stage1.block0.conv1.weight" -> "conv1", "fc.bias" -> "fc"."""
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 else ""


def decay_keys(params) -> set:
    """Names of the parameters that get weight decay: conv and linear weights (not BN, biases, attention)."""
    return {k for k in params if k.endswith(".weight") and (_layer_of(k).startswith("conv") or _layer_of(k) == "fc")}


def count_parameters(cfg: ResNetConfig) -> dict:
    """Parameter counts from the architecture (no arrays are made).

    Returns:
        {"total": int, "attention": int, "per_block": {block: {"channels", "params", "attention", "hp"}}}
        -- e.g. ECA on the default net: attention 9 (three blocks with k = 3).
    """
    if not isinstance(cfg, ResNetConfig):
        raise InputTypeError(f"cfg must be a ResNetConfig, got {type(cfg).__name__}")
    pshapes = _shapes(cfg)[0]
    sizes = {k: math.prod(s) for k, s in pshapes.items()}
    per_block = {}
    for spec in block_specs(cfg):
        own = [k for k in sizes if k.startswith(spec.name + ".")]
        attn = sum(sizes[k] for k in own if ".attn." in k)
        per_block[spec.name] = {"channels": spec.cout, "params": sum(sizes[k] for k in own), "attention": attn,
                                "hp": dict(spec.attn_hp)}
    return {"total": sum(sizes.values()), "attention": sum(b["attention"] for b in per_block.values()),
            "per_block": per_block}
