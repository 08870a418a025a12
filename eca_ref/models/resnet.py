"""The tiny CIFAR ECA-ResNet's forward and backward passes, written once, block by block.

The network (its config, blocks and parameters: :mod:`eca_ref.models.resnet_spec`)::

    stem:    conv3x3(3 -> w) - BN - ReLU                                       (N, w, 32, 32)
    stage1:  n basic blocks, w channels                                        (N, w, 32, 32)
    stage2:  n basic blocks, 2w channels, the first with stride 2             (N, 2w, 16, 16)
    stage3:  n basic blocks, 4w channels, the first with stride 2             (N, 4w, 8, 8)
    head:    global average pooling - linear(4w -> num_classes)                (N, num_classes)

    basic block:  out = ReLU( attn(BN(conv3x3(ReLU(BN(conv3x3(x)))))) + shortcut(x) )

The attention module sits where the ECA authors put it: after the block's second BN, before the
residual addition (docs/paper.md, "Where the module sits"). The shortcut is the identity, or a 1x1
conv (with the block's stride) + BN where the shape changes.

Every layer is a pair ``forward(...) -> (out, cache)``, ``backward(dout, cache) -> (dx, grads)``
from :mod:`eca_ref.functional`. The passes take them from a :class:`Layers` bundle, by default the
reference layers; the engine (``eca_ref.engine``) hands in faster layers with the same contract,
and tests/test_engine.py checks that both give the same numbers. Nothing is mutated: the forward
pass returns the new BN running statistics.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

from eca_ref.attention import VARIANTS
from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.activations import relu_backward, relu_forward
from eca_ref.functional.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from eca_ref.functional.conv import conv2d_backward, conv2d_forward
from eca_ref.functional.linear import linear_backward, linear_forward
from eca_ref.functional.pooling import gap_backward, gap_forward
from eca_ref.models.resnet_spec import (CONV_INITS, IN_CHANNELS, BlockSpec, ResNetConfig, block_specs,
                                        buffer_shapes, count_parameters, decay_keys, init_resnet, param_shapes)
from eca_ref.validation import check_float_array

__all__ = ["Layers", "REFERENCE_LAYERS", "BlockCache", "ResNetCache", "block_forward", "block_backward",
           "resnet_forward", "resnet_backward", "attention_gates",
           # the network's shape, from resnet_spec
           "ResNetConfig", "BlockSpec", "CONV_INITS", "block_specs", "init_resnet", "decay_keys", "count_parameters",
           "param_shapes", "buffer_shapes"]


class Layers(NamedTuple):
    """The layer functions the network is made of (keyword arguments as the reference's)."""

    conv_forward: Callable    # (x, w, *, stride, padding) -> (out, cache)
    conv_backward: Callable   # (dout, cache, *, input_grad) -> (dx, {"weight"})
    bn_forward: Callable      # (x, weight, bias, running_mean, running_var, *, train) -> (out, cache, RunningStats)
    bn_backward: Callable     # (dout, cache) -> (dx, {"weight", "bias"})
    relu_forward: Callable    # (x) -> (out, cache)
    relu_backward: Callable   # (dout, cache) -> dx
    add: Callable             # (a, b) -> a + b: the residual addition, and the sum of two gradient paths


def _add(a, b):
    return a + b


# The plain layers of eca_ref.functional; the model checks its inputs once, so the layers need not.
REFERENCE_LAYERS = Layers(
    conv_forward=partial(conv2d_forward, check_finite=False),
    conv_backward=conv2d_backward,
    bn_forward=partial(batchnorm2d_forward, check_finite=False),
    bn_backward=batchnorm2d_backward,
    relu_forward=partial(relu_forward, check_finite=False),
    relu_backward=relu_backward,
    add=_add,
)


class BlockCache(NamedTuple):
    conv1: object
    bn1: object
    relu1: object
    conv2: object
    bn2: object
    attn: object      # the attention module's cache, or None without attention
    sc_conv: object   # None for the identity shortcut
    sc_bn: object
    relu2: object


class ResNetCache(NamedTuple):
    cfg: ResNetConfig
    layers: Layers
    stem_conv: object
    stem_bn: object
    stem_relu: object
    blocks: tuple     # BlockCache per block
    gap: object
    fc: object


def _sub(params: dict, prefix: str) -> dict:
    """The entries of params under prefix, without it: _sub(p, "stage1.block0.bn1.") -> {"weight", "bias"}."""
    return {k[len(prefix):]: a for k, a in params.items() if k.startswith(prefix)}


def _bn_forward(layers, h, params, buffers, prefix, train, new_buffers):
    """One BN layer by its dotted name; its new running statistics go into new_buffers."""
    out, cache, stats = layers.bn_forward(h, params[prefix + ".weight"], params[prefix + ".bias"],
                                          buffers[prefix + ".running_mean"], buffers[prefix + ".running_var"],
                                          train=train)
    new_buffers[prefix + ".running_mean"] = stats.mean
    new_buffers[prefix + ".running_var"] = stats.var
    return out, cache


def block_forward(h, params, buffers, spec: BlockSpec, cfg: ResNetConfig, *, train: bool, new_buffers: dict,
                  layers: Layers = REFERENCE_LAYERS):
    """One basic block: ReLU(attn(BN(conv(ReLU(BN(conv(h)))))) + shortcut(h)).

    Shape:
        h: (N, cin, H, W) -> out: (N, cout, H / stride, W / stride)

    Returns:
        (out, BlockCache); the block's new BN running statistics go into ``new_buffers``.
    """
    p = spec.name
    o, c1 = layers.conv_forward(h, params[p + ".conv1.weight"], stride=spec.stride, padding=1)
    o, b1 = _bn_forward(layers, o, params, buffers, p + ".bn1", train, new_buffers)
    o, r1 = layers.relu_forward(o)
    o, c2 = layers.conv_forward(o, params[p + ".conv2.weight"], stride=1, padding=1)
    o, b2 = _bn_forward(layers, o, params, buffers, p + ".bn2", train, new_buffers)   # (N, C, H', W')
    attn = None
    if cfg.attention != "none":            # the paper's module: o * σ(f(GAP(o))), per channel
        o, attn = VARIANTS[cfg.attention].forward(o, _sub(params, p + ".attn."), check_finite=False)
    sc_conv = sc_bn = None
    if spec.projection:                    # 1x1 conv + BN where the shape changes
        s, sc_conv = layers.conv_forward(h, params[p + ".shortcut.conv.weight"], stride=spec.stride, padding=0)
        s, sc_bn = _bn_forward(layers, s, params, buffers, p + ".shortcut.bn", train, new_buffers)
    else:
        s = h
    out, r2 = layers.relu_forward(layers.add(o, s))   # the residual addition, then ReLU
    return out, BlockCache(c1, b1, r1, c2, b2, attn, sc_conv, sc_bn, r2)


def block_backward(dout, cache: BlockCache, spec: BlockSpec, cfg: ResNetConfig, grads: dict,
                   layers: Layers = REFERENCE_LAYERS):
    """The gradient of :func:`block_forward`: dh (the block's input), parameter gradients into ``grads``.

    The input reaches the output by two paths, the residual branch and the shortcut, so
    dh = dh_branch + dh_shortcut.
    """
    p = spec.name
    do = layers.relu_backward(dout, cache.relu2)                               # (N, C, H', W')
    if spec.projection:
        ds, g = layers.bn_backward(do, cache.sc_bn)
        grads[p + ".shortcut.bn.weight"], grads[p + ".shortcut.bn.bias"] = g["weight"], g["bias"]
        ds, g = layers.conv_backward(ds, cache.sc_conv, input_grad=True)
        grads[p + ".shortcut.conv.weight"] = g["weight"]
    else:
        ds = do                                                                # the identity shortcut
    if cache.attn is not None:
        do, g = VARIANTS[cfg.attention].backward(do, cache.attn)
        grads.update({f"{p}.attn.{k}": a for k, a in g.items()})
    do, g = layers.bn_backward(do, cache.bn2)
    grads[p + ".bn2.weight"], grads[p + ".bn2.bias"] = g["weight"], g["bias"]
    do, g = layers.conv_backward(do, cache.conv2, input_grad=True)
    grads[p + ".conv2.weight"] = g["weight"]
    do = layers.relu_backward(do, cache.relu1)
    do, g = layers.bn_backward(do, cache.bn1)
    grads[p + ".bn1.weight"], grads[p + ".bn1.bias"] = g["weight"], g["bias"]
    do, g = layers.conv_backward(do, cache.conv1, input_grad=True)
    grads[p + ".conv1.weight"] = g["weight"]
    return layers.add(do, ds)                                                  # both paths into the input


def _check_model_inputs(x, params, buffers, cfg):
    if not isinstance(cfg, ResNetConfig):
        raise InputTypeError(f"cfg must be a ResNetConfig, got {type(cfg).__name__}")
    check_float_array(x, "x", ndim=4, dims="(N, 3, H, W)", check_finite=False)
    if x.shape[1] != IN_CHANNELS:
        raise InputError(f"x must have shape (N, 3, H, W) (RGB images), got {tuple(x.shape)}")
    for label, d, shapes in (("params", params, param_shapes(cfg)), ("buffers", buffers, buffer_shapes(cfg))):
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


def resnet_forward(x, params, buffers, cfg: ResNetConfig, *, train: bool, layers: Layers | None = None):
    """The network's forward pass.

    Args:
        x: images, float32 (training) or float64 (checks); params and buffers of the same dtype.
        params, buffers: from :func:`init_resnet` (or a checkpoint).
        cfg: the config they were made for.
        train: BN with batch statistics (True) or running statistics (False).
        layers: the layer functions (default: the reference's, :data:`REFERENCE_LAYERS`).

    Shape:
        x: (N, 3, H, W) -> logits: (N, num_classes)

    Returns:
        (logits, cache, new_buffers) -- new_buffers holds the updated BN running statistics in train
        mode (the same arrays in eval mode); the inputs are never mutated.
    """
    _check_model_inputs(x, params, buffers, cfg)
    if layers is None:
        layers = REFERENCE_LAYERS
    elif not isinstance(layers, Layers):
        raise InputTypeError(f"layers must be a Layers bundle, got {type(layers).__name__}")
    train = bool(train)
    new_buffers = {}
    h, stem_conv = layers.conv_forward(x, params["stem.conv.weight"], stride=1, padding=1)
    h, stem_bn = _bn_forward(layers, h, params, buffers, "stem.bn", train, new_buffers)
    h, stem_relu = layers.relu_forward(h)                                            # (N, w, H, W)
    blocks = []
    for spec in block_specs(cfg):
        h, bc = block_forward(h, params, buffers, spec, cfg, train=train, new_buffers=new_buffers, layers=layers)
        blocks.append(bc)
    y, gap = gap_forward(h, check_finite=False)                                      # (N, 4w)
    logits, fc = linear_forward(y, params["fc.weight"], params["fc.bias"], check_finite=False)  # (N, classes)
    cache = ResNetCache(cfg, layers, stem_conv, stem_bn, stem_relu, tuple(blocks), gap, fc)
    return logits, cache, {k: new_buffers[k] for k in buffers}


def resnet_backward(dlogits, cache: ResNetCache) -> dict:
    """Gradients of every parameter, keyed like params, from dL/dlogits of shape (N, num_classes)."""
    if not isinstance(cache, ResNetCache):
        raise InputTypeError(f"cache must be the cache resnet_forward returned, got {type(cache).__name__}")
    cfg, layers = cache.cfg, cache.layers
    check_float_array(dlogits, "dlogits", shape=(cache.fc.x.shape[0], cfg.num_classes), dims="(N, num_classes)",
                      check_finite=False)
    grads = {}
    dy, g = linear_backward(dlogits, cache.fc)                                      # (N, 4w)
    grads["fc.weight"], grads["fc.bias"] = g["weight"], g["bias"]
    dh = gap_backward(dy, cache.gap)                                                # (N, 4w, H', W')
    for spec, bc in zip(reversed(block_specs(cfg)), reversed(cache.blocks)):
        dh = block_backward(dh, bc, spec, cfg, grads, layers)
    dh = layers.relu_backward(dh, cache.stem_relu)
    dh, g = layers.bn_backward(dh, cache.stem_bn)
    grads["stem.bn.weight"], grads["stem.bn.bias"] = g["weight"], g["bias"]
    _, g = layers.conv_backward(dh, cache.stem_conv, input_grad=False)             # no gradient for the images
    grads["stem.conv.weight"] = g["weight"]
    return {k: grads[k] for k in param_shapes(cfg)}


def attention_gates(x, params, buffers, cfg: ResNetConfig) -> dict:
    """The gate σ(f(GAP(·))) of every block in eval mode: {block name: (N, C)} (ones for "none")."""
    xp = get_xp()
    check_float_array(x, "x", ndim=4, dims="(N, 3, H, W)", check_finite=True)
    _, cache, _ = resnet_forward(x, params, buffers, cfg, train=False)
    return {spec.name: (bc.attn.s if bc.attn is not None else xp.ones((x.shape[0], spec.cout), dtype=x.dtype))
            for spec, bc in zip(block_specs(cfg), cache.blocks)}
