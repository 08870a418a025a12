"""A tiny CIFAR ResNet (He et al., 2016, section 4.2) with a channel-attention module in every block.

Architecture for depth 6n + 2 and width w (default depth 8, w = 16, about 78k parameters)::

    stem:    conv3x3(3 -> w) - BN - ReLU                                       (N, w, 32, 32)
    stage1:  n basic blocks, w channels                                        (N, w, 32, 32)
    stage2:  n basic blocks, 2w channels, the first with stride 2             (N, 2w, 16, 16)
    stage3:  n basic blocks, 4w channels, the first with stride 2             (N, 4w, 8, 8)
    head:    global average pooling - linear(4w -> num_classes)                (N, num_classes)

    basic block:  out = ReLU( attn(BN(conv3x3(ReLU(BN(conv3x3(x)))))) + shortcut(x) )

The attention module sits where the ECA authors put it: after the block's second BN, before the
residual addition. The shortcut is the identity, or a 1x1 conv (with the block's stride) + BN
where the shape changes. ECA's k is chosen per block from its channels (``kernel_size(C)``)
unless ``ResNetConfig.k`` fixes it.

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

from eca_ref import parallel, procshards
from eca_ref.attention import VARIANTS, kernel_size
from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from eca_ref.functional.conv import conv2d_backward, conv2d_forward
from eca_ref.functional.linear import linear_backward, linear_forward
from eca_ref.functional.pooling import gap_backward, gap_forward
from eca_ref.validation import check_float_array, check_int

__all__ = ["ResNetConfig", "BlockSpec", "block_specs", "init_resnet", "resnet_forward", "resnet_backward",
           "decay_keys", "count_parameters", "attention_gates", "param_shapes", "buffer_shapes"]

IN_CHANNELS = 3


@dataclass(frozen=True)
class ResNetConfig:
    """The network's shape. Checked on creation (bad values raise InputError / InputTypeError).

    Attributes:
        depth: 6n + 2 layers with weights (n >= 1 blocks per stage): 8, 14, 20, 32, ...
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
        depth = check_int(self.depth, "depth", min_value=8)
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


# ------------------------------------------------------------------------------ forward / backward

class BlockCache(NamedTuple):
    conv1: object
    bn1: object
    relu1: object     # the ReLU outputs (their positive entries are the backward's mask)
    conv2: object
    bn2: object
    attn: object      # AttentionCache, or None without attention
    sc_conv: object   # None for the identity shortcut
    sc_bn: object
    relu2: object


class ResNetCache(NamedTuple):
    cfg: ResNetConfig
    stem_conv: object
    stem_bn: object
    stem_relu: object
    blocks: tuple     # BlockCache per block
    gap: object
    fc: object


def _check_model_inputs(x, params, buffers, cfg):
    if not isinstance(cfg, ResNetConfig):
        raise InputTypeError(f"cfg must be a ResNetConfig, got {type(cfg).__name__}")
    check_float_array(x, "x", ndim=4, dims="(N, 3, H, W)", check_finite=False)
    if x.shape[1] != IN_CHANNELS:
        raise InputError(f"x must have shape (N, 3, H, W) (RGB images), got {tuple(x.shape)}")
    pshapes, bshapes = _shapes(cfg)
    for label, d, shapes in (("params", params, pshapes), ("buffers", buffers, bshapes)):
        if not isinstance(d, dict):
            raise InputTypeError(f"{label} must be a dict of arrays, got {type(d).__name__}")
        missing = [k for k in shapes if k not in d]
        extra = [k for k in d if k not in shapes]
        if missing or extra:
            raise InputError(f"{label} do not match the config {cfg}: missing {missing[:4] or 'none'}"
                             f"{' ...' if len(missing) > 4 else ''}, unexpected {extra[:4] or 'none'}")
        for k, shape in shapes.items():
            a = d[k]
            if getattr(a, "shape", None) != shape or getattr(a, "dtype", None) != x.dtype:
                raise InputError(f"{label}[{k!r}] must be an array of shape {shape} and dtype {x.dtype} "
                                 f"(the dtype of x), got {getattr(a, 'shape', type(a).__name__)} "
                                 f"{getattr(a, 'dtype', '')}")


def _relu_inplace(a):
    """ReLU written into a (an array this pass owns); the output itself is the backward's mask."""
    xp = get_xp()

    def part(c0, c1):
        xp.maximum(a[:, c0:c1], 0, out=a[:, c0:c1])

    parallel.over_channels(part, a)
    return a


def _is_channel_major(a) -> bool:
    """(N, C, H, W) with channel-major contiguous memory (each channel one block)?"""
    return a.transpose(1, 0, 2, 3).flags.c_contiguous


def _own_channel_major(a):
    """Where a result of a (N, C, H, W) operation on ``a`` goes: a itself when it is channel-major
    contiguous (an array this pass owns), else a new channel-major array. A convolution's input
    gradient is a cropped view (rows of W among W + p stored values, W + 2 p for stride > 1), over which NumPy runs several times
    slower than over whole blocks: the first operation on it writes its result into a fresh block."""
    xp = get_xp()
    if _is_channel_major(a):
        return a
    N, C, H, W = a.shape
    return xp.empty((C, N, H, W), dtype=a.dtype).transpose(1, 0, 2, 3)


def _relu_backward_owned(da, a):
    """da * (a > 0), in da's memory where it is a block (the same math as functional.activations.relu_backward)."""
    xp = get_xp()
    out = _own_channel_major(da)

    def part(c0, c1):
        xp.multiply(da[:, c0:c1], a[:, c0:c1] > 0, out=out[:, c0:c1])

    parallel.over_channels(part, da)
    return out


def _add_owned(a, b):
    """a + b, in a's memory where it is a block (a is an array this pass owns), split over channels."""
    xp = get_xp()
    out = _own_channel_major(a)

    def part(c0, c1):
        xp.add(a[:, c0:c1], b[:, c0:c1], out=out[:, c0:c1])

    parallel.over_channels(part, a)
    return out


def _channel_major(a):
    """An (N, C, H, W) array with channel-major memory (the same values): the order the layers run fastest on."""
    xp = get_xp()
    return xp.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def _bn(h, params, buffers, prefix, train, new_buffers, allreduce):
    out, cache, stats = batchnorm2d_forward(h, params[prefix + ".weight"], params[prefix + ".bias"],
                                            buffers[prefix + ".running_mean"], buffers[prefix + ".running_var"],
                                            train=train, check_finite=False, allreduce=allreduce)
    new_buffers[prefix + ".running_mean"] = stats.mean
    new_buffers[prefix + ".running_var"] = stats.var
    return out, cache


def _forward(x, params, buffers, cfg, train, gates=None, allreduce=None):
    """The forward pass of one batch, or of one shard of it (allreduce: the shard's reduce function)."""
    v = VARIANTS[cfg.attention]
    new_buffers = {}
    h, stem_conv = conv2d_forward(x, params["stem.conv.weight"], stride=1, padding=1, check_finite=False)
    h, stem_bn = _bn(h, params, buffers, "stem.bn", train, new_buffers, allreduce)
    h = stem_relu = _relu_inplace(h)                                              # (N, w, H, W)
    blocks = []
    for spec in block_specs(cfg):
        p = spec.name
        o, c1 = conv2d_forward(h, params[p + ".conv1.weight"], stride=spec.stride, padding=1, check_finite=False)
        o, b1 = _bn(o, params, buffers, p + ".bn1", train, new_buffers, allreduce)
        o = r1 = _relu_inplace(o)
        o, c2 = conv2d_forward(o, params[p + ".conv2.weight"], stride=1, padding=1, check_finite=False)
        o, b2 = _bn(o, params, buffers, p + ".bn2", train, new_buffers, allreduce)              # (N, C, H', W')
        ac = None
        if cfg.attention != "none":
            prefix = p + ".attn."
            ap = {k[len(prefix):]: a for k, a in params.items() if k.startswith(prefix)}
            o, ac = v.forward(o, ap, check_finite=False)
            if gates is not None:
                gates[p] = ac.s                                                      # (N, C)
        sc_conv = sc_bn = None
        if spec.projection:
            s, sc_conv = conv2d_forward(h, params[p + ".shortcut.conv.weight"], stride=spec.stride, padding=0,
                                        check_finite=False)
            s, sc_bn = _bn(s, params, buffers, p + ".shortcut.bn", train, new_buffers, allreduce)
        else:
            s = h
        o = _add_owned(o, s)  # the residual addition (o is this block's own array)
        h = r2 = _relu_inplace(o)
        blocks.append(BlockCache(c1, b1, r1, c2, b2, ac, sc_conv, sc_bn, r2))
    y, gap = gap_forward(h, check_finite=False)                                      # (N, 4w)
    logits, fc = linear_forward(y, params["fc.weight"], params["fc.bias"], check_finite=False)  # (N, classes)
    cache = ResNetCache(cfg, stem_conv, stem_bn, stem_relu, tuple(blocks), gap, fc)
    new_buffers = {k: new_buffers[k] for k in buffers}
    return logits, cache, new_buffers


# Data parallel: inside parallel.threads(n) a batch is cut into n shards of at least MIN_SHARD images,
# each run through the whole network by its own thread, with the batch-norm statistics summed over
# the shards (synchronised batch norm: the same math as one batch) and the gradients summed at the
# end. Measured on 2 cores (eca-ref bench, docs/results.md): a default training step took 158 ms as two
# shards of 64 against 187 ms with every layer split over the threads (many short hand-overs, serial bits).
MIN_SHARD = 8


class ShardedCache(NamedTuple):
    cfg: ResNetConfig
    bounds: tuple     # (start, stop) rows of each shard
    caches: tuple     # ResNetCache per shard
    reducer: object   # the shards' parallel.AllReduce (the backward's batch-norm sums use it too)


def _forward_sharded(x, params, buffers, cfg, train, gates=None):
    """_forward over the shards of x: in worker processes inside procshards.processes, in threads
    inside parallel.threads, else (or for a batch too small to shard) in one piece in this thread."""
    xp = get_xp()
    pool = procshards.active_pool()
    if pool is not None and gates is None and x.shape[0] >= pool.n * MIN_SHARD:
        return pool.forward(x, params, buffers, cfg, train)  # the shards in worker processes
    n = parallel.shard_count(x.shape[0], MIN_SHARD)
    if n == 1:  # one piece, every layer serially: the numbers of one shard, with threads or processes alike
        with parallel.serial():
            return _forward(x, params, buffers, cfg, train, gates)
    bounds = tuple(parallel.split(x.shape[0], n))
    reducer = parallel.AllReduce(n)

    def shard(i, reduce):
        a, b = bounds[i]
        own = {} if gates is not None else None
        logits, cache, new_buffers = _forward(x[a:b], params, buffers, cfg, train, own, reduce if train else None)
        return logits, cache, new_buffers, own

    results = parallel.run_shards(shard, n, reducer=reducer)
    logits = xp.concatenate([r[0] for r in results], axis=0)
    if gates is not None:
        for name in results[0][3]:
            gates[name] = xp.concatenate([r[3][name] for r in results], axis=0)
    # the running statistics come from the whole batch's statistics: the same in every shard
    return logits, ShardedCache(cfg, bounds, tuple(r[1] for r in results), reducer), results[0][2]


def resnet_forward(x, params, buffers, cfg: ResNetConfig, *, train: bool):
    """The network's forward pass.

    Args:
        x: images, float32 (training) or float64 (checks); params and buffers of the same dtype.
        params, buffers: from :func:`init_resnet` (or a checkpoint).
        cfg: the config they were made for.
        train: BN with batch statistics (True) or running statistics (False).

    Shape:
        x: (N, 3, H, W) -> logits: (N, num_classes)

    Returns:
        (logits, cache, new_buffers) -- new_buffers holds the updated BN running statistics in train
        mode (the same arrays in eval mode); the inputs are never mutated.

    Inside ``parallel.threads(n)`` the batch runs as n shards in parallel threads, inside
    ``procshards.processes(n)`` in this process and n - 1 worker processes (see MIN_SHARD; the two
    give the same numbers); the result is the same function (batch statistics of the whole batch),
    summed in another order.
    """
    _check_model_inputs(x, params, buffers, cfg)
    return _forward_sharded(x, params, buffers, cfg, bool(train))


def resnet_backward(dlogits, cache) -> dict:
    """Gradients of every parameter, keyed like params, from dL/dlogits of shape (N, num_classes)."""
    if not isinstance(cache, (ResNetCache, ShardedCache, procshards.ProcCache)):
        raise InputTypeError(f"cache must be the cache resnet_forward returned, got {type(cache).__name__}")
    cfg = cache.cfg
    N = cache.fc.x.shape[0] if isinstance(cache, ResNetCache) else cache.bounds[-1][1]
    check_float_array(dlogits, "dlogits", shape=(N, cfg.num_classes), dims="(N, num_classes)", check_finite=False)
    if isinstance(cache, ResNetCache):
        with parallel.serial():
            return _backward(dlogits, cache)
    if isinstance(cache, procshards.ProcCache):
        return cache.pool.backward(dlogits, cache)

    def shard(i, reduce):  # the shard's batch-norm layers reduce through the forward's reducer
        a, b = cache.bounds[i]
        return _backward(dlogits[a:b], cache.caches[i])

    parts = parallel.run_shards(shard, len(cache.caches), reducer=cache.reducer)
    grads = parts[0]
    for other in parts[1:]:  # each shard's share, added in shard order (deterministic)
        for k, a in other.items():
            grads[k] += a
    return grads


def _backward(dlogits, cache: ResNetCache) -> dict:
    cfg = cache.cfg
    v = VARIANTS[cfg.attention]
    grads = {}
    dy, g = linear_backward(dlogits, cache.fc)
    grads["fc.weight"], grads["fc.bias"] = g["weight"], g["bias"]
    # the conv and BN layers keep activations channel-major in memory (see functional/conv.py); the
    # gradient starts that way too, so that every elementwise op below sees one memory order
    dh = _channel_major(gap_backward(dy, cache.gap))                                 # (N, 4w, H', W')
    specs = block_specs(cfg)
    for spec, bc in zip(reversed(specs), reversed(cache.blocks)):
        p = spec.name
        do = _relu_backward_owned(dh, bc.relu2)
        if spec.projection:
            ds, g = batchnorm2d_backward(do, bc.sc_bn)
            grads[p + ".shortcut.bn.weight"], grads[p + ".shortcut.bn.bias"] = g["weight"], g["bias"]
            ds, g = conv2d_backward(ds, bc.sc_conv)
            grads[p + ".shortcut.conv.weight"] = g["weight"]
        else:
            ds = do
        if bc.attn is not None:
            do, g = v.backward(do, bc.attn)
            for k, a in g.items():
                grads[f"{p}.attn.{k}"] = a
        # do is this pass's own array (written in place) unless it is also the identity shortcut's ds
        do, g = batchnorm2d_backward(do, bc.bn2, overwrite_dout=ds is not do)
        grads[p + ".bn2.weight"], grads[p + ".bn2.bias"] = g["weight"], g["bias"]
        do, g = conv2d_backward(do, bc.conv2)
        grads[p + ".conv2.weight"] = g["weight"]
        do = _relu_backward_owned(do, bc.relu1)
        do, g = batchnorm2d_backward(do, bc.bn1, overwrite_dout=True)
        grads[p + ".bn1.weight"], grads[p + ".bn1.bias"] = g["weight"], g["bias"]
        do, g = conv2d_backward(do, bc.conv1)
        grads[p + ".conv1.weight"] = g["weight"]
        dh = _add_owned(do, ds)  # both paths into the block's input
    dh = _relu_backward_owned(dh, cache.stem_relu)
    dh, g = batchnorm2d_backward(dh, cache.stem_bn, overwrite_dout=True)
    grads["stem.bn.weight"], grads["stem.bn.bias"] = g["weight"], g["bias"]
    _, g = conv2d_backward(dh, cache.stem_conv, input_grad=False)  # no gradient for the images
    grads["stem.conv.weight"] = g["weight"]
    return {k: grads[k] for k in _shapes(cfg)[0]}


def attention_gates(x, params, buffers, cfg: ResNetConfig) -> dict:
    """The gate σ(f(GAP(·))) of every block in eval mode: {block name: (N, C)} (ones for "none")."""
    xp = get_xp()
    _check_model_inputs(x, params, buffers, cfg)
    check_float_array(x, "x", ndim=4, dims="(N, 3, H, W)", check_finite=True)
    gates = {}
    _forward_sharded(x, params, buffers, cfg, False, gates)
    if cfg.attention == "none":
        N = x.shape[0]
        gates = {s.name: xp.ones((N, s.cout), dtype=x.dtype) for s in block_specs(cfg)}
    return gates
