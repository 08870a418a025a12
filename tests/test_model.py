"""The tiny CIFAR ResNet: config checks, parameter counts, gradients (float64), determinism."""
import numpy as np
import pytest

from eca_ref.attention import VARIANTS
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.loss import softmax_cross_entropy
from eca_ref.gradcheck import rel_error
from eca_ref.models import (ResNetConfig, attention_gates, block_specs, count_parameters, decay_keys, init_resnet,
                            resnet_backward, resnet_forward)


def _batch(N=3, H=8, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 3, H, H)).astype(dtype), rng.integers(0, 10, N)


def test_default_net_counts():
    cfg = ResNetConfig()
    counts = count_parameters(cfg)
    assert counts["total"] == 78051  # the same as torch's count for the identical model (test_model_parity)
    assert counts["attention"] == 9  # three blocks, k = 3 each
    assert [b["hp"]["k"] for b in counts["per_block"].values()] == [3, 3, 3]
    assert count_parameters(ResNetConfig(attention="none"))["total"] == 78051 - 9
    assert count_parameters(ResNetConfig(k=5))["attention"] == 15


@pytest.mark.parametrize("attention", list(VARIANTS))
def test_counts_match_init_for_every_variant(attention):
    cfg = ResNetConfig(depth=14, width=8, attention=attention)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    counts = count_parameters(cfg)
    assert counts["total"] == sum(a.size for a in params.values())
    assert counts["attention"] == sum(a.size for k, a in params.items() if ".attn." in k)
    assert sum(b["params"] for b in counts["per_block"].values()) == sum(
        a.size for k, a in params.items() if k.startswith("stage"))
    assert all(k.endswith(("running_mean", "running_var")) for k in buffers)
    x, y = _batch(N=2)
    logits, cache, new_buffers = resnet_forward(x, params, buffers, cfg, train=True)
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
    grads = resnet_backward(softmax_cross_entropy(logits, y)[1], cache)
    assert list(grads) == list(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == params[k].dtype for k in params)
    assert set(new_buffers) == set(buffers)


def test_names_init_and_decay_keys():
    cfg = ResNetConfig()
    params, buffers = init_resnet(cfg, np.random.default_rng(0))
    for name in ["stem.conv.weight", "stage1.block0.conv1.weight", "stage1.block0.bn1.weight",
                 "stage1.block0.bn1.bias", "stage1.block0.attn.w", "stage2.block0.shortcut.conv.weight",
                 "stage2.block0.shortcut.bn.weight", "fc.weight", "fc.bias"]:
        assert name in params and params[name].dtype == np.float32
    assert "stage1.block0.shortcut.conv.weight" not in params  # same shape: identity shortcut
    assert buffers["stage1.block0.bn1.running_var"].tolist() == [1.0] * 16
    assert params["stage1.block0.bn2.weight"].tolist() == [1.0] * 16
    w = params["stage3.block0.conv2.weight"]  # kaiming normal, fan_out = 64 * 9
    assert abs(w.std() - np.sqrt(2.0 / (64 * 9))) < 0.1 * np.sqrt(2.0 / (64 * 9))
    assert np.abs(params["fc.weight"]).max() <= 1 / 8
    decay = decay_keys(params)
    assert "fc.weight" in decay and "stem.conv.weight" in decay and "stage2.block0.shortcut.conv.weight" in decay
    assert not any(".bn" in k or k.endswith("bias") or ".attn." in k for k in decay)
    assert len(decay) == 10
    p2, _ = init_resnet(cfg, np.random.default_rng(0))
    assert all(np.array_equal(params[k], p2[k]) for k in params)  # one seed, one network


def test_block_layout():
    specs = block_specs(ResNetConfig(depth=14, width=4))
    assert [s.name for s in specs] == ["stage1.block0", "stage1.block1", "stage2.block0", "stage2.block1",
                                       "stage3.block0", "stage3.block1"]
    assert [(s.cout, s.stride, s.projection) for s in specs] == [(4, 1, False), (4, 1, False), (8, 2, True),
                                                                 (8, 1, False), (16, 2, True), (16, 1, False)]
    assert [s.attn_hp["k"] for s in block_specs(ResNetConfig(width=64))] == [3, 5, 5]


def _loss_fn(x, y, params, buffers, cfg):
    def f():
        logits, _, _ = resnet_forward(x, params, buffers, cfg, train=True)
        return np.array(softmax_cross_entropy(logits, y)[0])
    return f


@pytest.mark.parametrize("attention", ["eca", "se", "none"])
def test_model_gradcheck(attention):
    """Central differences of the loss, float64, for a sample of entries of x and of every kind of parameter."""
    cfg = ResNetConfig(depth=8, width=4, attention=attention)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    x, y = _batch(N=3, H=8)
    logits, cache, _ = resnet_forward(x, params, buffers, cfg, train=True)
    grads = resnet_backward(softmax_cross_entropy(logits, y)[1], cache)
    f = _loss_fn(x, y, params, buffers, cfg)
    rng = np.random.default_rng(2)
    h = 1e-5
    names = ["stem.conv.weight", "stage1.block0.conv1.weight", "stage1.block0.bn2.weight",
             "stage2.block0.shortcut.conv.weight", "stage3.block0.bn1.bias", "fc.weight", "fc.bias"]
    names += [k for k in params if ".attn." in k]
    for name in names:
        a, g = params[name].reshape(-1), grads[name].reshape(-1)
        for i in rng.choice(a.size, size=min(4, a.size), replace=False):
            old = a[i]
            a[i] = old + h
            fp = float(f())
            a[i] = old - h
            fm = float(f())
            a[i] = old
            num = (fp - fm) / (2 * h)
            assert abs(num - g[i]) <= 1e-6 * max(1.0, abs(num)) + 1e-8, (name, i, num, g[i])
    # the input: through every block and both shortcut kinds
    dx_num = []
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, size=6, replace=False)
    for i in idx:
        old = flat[i]
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        dx_num.append((fp - fm) / (2 * h))
    dx = _input_grad(x, y, params, buffers, cfg)
    assert rel_error(dx.reshape(-1)[idx], np.array(dx_num)) < 1e-5


def _input_grad(x, y, params, buffers, cfg):
    """dL/dx by backpropagating through the stem as well (the model skips it: images need no gradient).
    The model takes its layers as a bundle: this one's conv backward also computes the stem's dx."""
    from eca_ref.models import REFERENCE_LAYERS
    captured = {}

    def conv_backward(dout, c, *, input_grad=True):
        dx, g = REFERENCE_LAYERS.conv_backward(dout, c, input_grad=True)
        if not input_grad:  # only the stem's input needs no gradient
            captured["dx"] = dx
        return (dx if input_grad else None), g

    layers = REFERENCE_LAYERS._replace(conv_backward=conv_backward)
    logits, cache, _ = resnet_forward(x, params, buffers, cfg, train=True, layers=layers)
    assert cache.layers is layers
    dl = softmax_cross_entropy(logits, y)[1]
    resnet_backward(dl, cache)
    return captured["dx"]


def test_eval_mode_and_buffers():
    cfg = ResNetConfig(depth=8, width=4)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    x, _ = _batch(N=4)
    before = {k: v.copy() for k, v in buffers.items()}
    _, _, nb = resnet_forward(x, params, buffers, cfg, train=True)
    assert all(np.array_equal(before[k], buffers[k]) for k in buffers)  # not mutated
    assert not np.allclose(nb["stem.bn.running_mean"], 0)
    l1, _, nb2 = resnet_forward(x, params, nb, cfg, train=False)
    l2, _, _ = resnet_forward(x[:1], params, nb, cfg, train=False)
    np.testing.assert_allclose(l1[:1], l2, rtol=1e-10)  # eval: each image on its own
    assert all(nb2[k] is nb[k] for k in nb)


def test_attention_gates():
    cfg = ResNetConfig(depth=8, width=4)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    x, _ = _batch(N=2)
    gates = attention_gates(x, params, buffers, cfg)
    assert list(gates) == ["stage1.block0", "stage2.block0", "stage3.block0"]
    assert [g.shape for g in gates.values()] == [(2, 4), (2, 8), (2, 16)]
    assert all(np.all((g > 0) & (g < 1)) for g in gates.values())
    cfg0 = ResNetConfig(depth=8, width=4, attention="none")
    p0, b0 = init_resnet(cfg0, np.random.default_rng(0), dtype=np.float64)
    assert all(np.all(g == 1) for g in attention_gates(x, p0, b0, cfg0).values())


def test_float32_forward_close_to_float64():
    cfg = ResNetConfig(depth=8, width=8)
    p64, b64 = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    b32 = {k: v.astype(np.float32) for k, v in b64.items()}
    x, _ = _batch(N=4, H=16)
    l64 = resnet_forward(x, p64, b64, cfg, train=True)[0]
    l32 = resnet_forward(x.astype(np.float32), p32, b32, cfg, train=True)[0]
    assert l32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(depth=10), InputError, "6n \\+ 2"),
    (dict(depth=2), InputError, "depth must be >= 8"),
    (dict(depth=1208), InputError, "depth must be <= 1202"),          # would only stall building 200 blocks
    (dict(depth=8.0), InputTypeError, "depth must be an integer"),
    (dict(width=0), InputError, "width must be >= 1"),
    (dict(attention="cbam"), InputError, "unknown attention variant 'cbam'; known: none, se"),
    (dict(k=4), InputError, "k must be odd"),
    (dict(k=0), InputError, "k must be >= 1"),
    (dict(attention="se", k=3), InputError, "k applies only to the variants with a kernel"),
    (dict(num_classes=1), InputError, "num_classes must be >= 2"),
])
def test_bad_config(kwargs, err, match):
    with pytest.raises(err, match=match):
        ResNetConfig(**kwargs)


def test_bad_model_inputs():
    cfg = ResNetConfig(depth=8, width=4)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    x, _ = _batch(N=2)
    with pytest.raises(InputError, match="x must have shape \\(N, 3, H, W\\)"):
        resnet_forward(np.zeros((2, 1, 8, 8)), params, buffers, cfg, train=True)
    with pytest.raises(InputError, match="must be an array of shape .* and dtype float32"):
        resnet_forward(x.astype(np.float32), params, buffers, cfg, train=True)
    with pytest.raises(InputError, match="params do not match the config"):
        resnet_forward(x, {k: v for k, v in params.items() if k != "fc.bias"}, buffers, cfg, train=True)
    with pytest.raises(InputError, match="params\\['stem.conv.weight'\\] must be an array of shape \\(8, 3, 3, 3\\)"):
        resnet_forward(x, params, buffers, ResNetConfig(depth=8, width=8), train=True)
    with pytest.raises(InputTypeError, match="cfg must be a ResNetConfig"):
        resnet_forward(x, params, buffers, {"depth": 8}, train=True)
    with pytest.raises(InputTypeError, match="rng must be a numpy.random.Generator"):
        init_resnet(cfg, 0)
    _, cache, _ = resnet_forward(x, params, buffers, cfg, train=True)
    with pytest.raises(InputError, match="dlogits must have shape"):
        resnet_backward(np.zeros((3, 10)), cache)
    with pytest.raises(InputTypeError, match="cache must be the cache resnet_forward returned"):
        resnet_backward(np.zeros((2, 10)), {"not": "a cache"})
    with pytest.raises(InputTypeError, match="layers must be a Layers bundle"):
        resnet_forward(x, params, buffers, cfg, train=True, layers={"conv_forward": None})


def test_zero_init_residual_makes_every_block_its_shortcut():
    cfg = ResNetConfig(depth=14, width=4)
    base, buffers = init_resnet(cfg, np.random.default_rng(3), dtype=np.float64)
    params, _ = init_resnet(cfg, np.random.default_rng(3), dtype=np.float64, zero_init_residual=True)
    changed = sorted(k for k in params if not np.array_equal(params[k], base[k]))
    assert changed == sorted(f"{s.name}.bn2.weight" for s in block_specs(cfg))  # the same draws otherwise
    assert all(not params[k].any() for k in changed)
    # each residual branch outputs exactly 0: the logits do not depend on the branches' conv weights
    x, _ = _batch(N=4)
    logits, _, _ = resnet_forward(x, params, buffers, cfg, train=True)
    rng = np.random.default_rng(9)
    other = {k: (rng.standard_normal(v.shape) if k.endswith(("conv1.weight", "conv2.weight")) else v)
             for k, v in params.items()}
    logits2, _, _ = resnet_forward(x, other, buffers, cfg, train=True)
    assert np.array_equal(logits, logits2)
    logits3, _, _ = resnet_forward(x, {**base, **{k: other[k] for k in other if "conv" in k}}, buffers, cfg, train=True)
    assert not np.allclose(logits, logits3)  # with gamma 1 the branches count
    # and the zero gammas still learn: their gradient is not zero
    dlogits = softmax_cross_entropy(logits, np.array([0, 1, 2, 3]))[1]
    _, cache, _ = resnet_forward(x, params, buffers, cfg, train=True)
    grads = resnet_backward(dlogits, cache)
    assert all(np.abs(grads[k]).max() > 1e-6 for k in changed)
    with pytest.raises(InputTypeError, match="zero_init_residual must be a bool"):
        init_resnet(cfg, np.random.default_rng(0), zero_init_residual=1)


def test_pytorch_init_draws_conv_weights_like_conv2d_and_nothing_else_differently():
    cfg = ResNetConfig(depth=8, width=16)
    kaiming, _ = init_resnet(cfg, np.random.default_rng(5), dtype=np.float64)
    params, _ = init_resnet(cfg, np.random.default_rng(5), dtype=np.float64, init="pytorch")
    w = params["stage3.block0.conv2.weight"]                       # (64, 64, 3, 3): 36,864 values
    bound = 1.0 / np.sqrt(64 * 9)                                   # 1/sqrt(fan_in)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.999 * bound
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.02         # uniform: std = bound / sqrt(3)
    assert abs(w.mean()) < 0.01 * bound
    # Kaiming normal (fan out) of the same layer: std sqrt(2 / (64 * 9)), 2.45 times larger
    assert abs(kaiming["stage3.block0.conv2.weight"].std() / np.sqrt(2 / 576) - 1) < 0.02
    stem = params["stem.conv.weight"]                               # fan_in = 3 * 3 * 3
    assert np.abs(stem).max() <= 1 / np.sqrt(27)
    # the BN parameters are the same constants either way (weight 1, bias 0)
    bn = [k for k in params if k.rsplit(".", 2)[-2].startswith("bn")]
    assert len(bn) == 2 * (1 + 2 * 3 + 2)                           # stem, 2 per block, 2 projections
    for k in bn:
        assert np.array_equal(params[k], kaiming[k]) and np.all(params[k] == (1.0 if k.endswith("weight") else 0.0))
    with pytest.raises(InputError, match="init must be one of kaiming, pytorch, got 'xavier'"):
        init_resnet(cfg, np.random.default_rng(0), init="xavier")
