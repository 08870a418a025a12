"""[parity] The NumPy ResNet against an identical PyTorch model, float64 (skipped without torch).

The PyTorch model is eca_ref.bench.make_torch_resnet, the one `eca-ref bench` times: this test is
also the proof that the benchmark compares the same network.
"""
import numpy as np
import pytest

from eca_ref.functional.loss import softmax_cross_entropy
from eca_ref.bench import make_torch_resnet, torch_name
from eca_ref.models import ResNetConfig, init_resnet, resnet_backward, resnet_forward

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.mark.parametrize("attention", ["eca", "none"])
def test_parity_resnet(attention):
    cfg = ResNetConfig(depth=14, width=4, attention=attention)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    model = make_torch_resnet(cfg, params, buffers, dtype=torch.float64)
    assert sum(p.numel() for p in model.parameters()) == sum(a.size for a in params.values())
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 3, 12, 12)), rng.integers(0, 10, 4)
    logits, cache, new_buffers = resnet_forward(x, params, buffers, cfg, train=True)
    loss, dlogits = softmax_cross_entropy(logits, y)
    grads = resnet_backward(dlogits, cache)
    model.train()
    tlogits = model(torch.tensor(x))
    tloss = nn.functional.cross_entropy(tlogits, torch.tensor(y))
    tloss.backward()
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=1e-9, atol=1e-10)
    assert abs(loss - tloss.item()) < 1e-10
    tparams = dict(model.named_parameters())
    for name, g in grads.items():
        np.testing.assert_allclose(g, tparams[torch_name(name)].grad.numpy().reshape(g.shape), rtol=1e-7,
                                   atol=1e-10, err_msg=name)
    tstate = model.state_dict()
    for name, b in new_buffers.items():
        np.testing.assert_allclose(b, tstate[torch_name(name)].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    # eval mode with the updated running statistics
    model.eval()
    elogits = resnet_forward(x, params, new_buffers, cfg, train=False)[0]
    np.testing.assert_allclose(elogits, model(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-10)


def test_parity_pytorch_init_is_conv2d_default():
    """init="pytorch" draws from the distribution torch.nn.Conv2d itself uses (kaiming_uniform_, a=sqrt(5))."""
    cfg = ResNetConfig(depth=8, width=16)
    params, _ = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64, init="pytorch")
    torch.manual_seed(0)
    twin = make_torch_resnet(cfg)                      # PyTorch's own default initialisation
    state = twin.state_dict()
    for name, a in params.items():
        if name.endswith("conv1.weight") or name.endswith("conv2.weight") or name.endswith("conv.weight"):
            t = state[torch_name(name)].double().numpy()
            fan_in = a[0].size
            # both uniform on the same interval: the same bound (the extremes) and standard deviation
            assert np.abs(t).max() <= 1 / np.sqrt(fan_in) + 1e-7 and np.abs(a).max() <= 1 / np.sqrt(fan_in)
            if a.size >= 4096:
                assert abs(a.std() / t.std() - 1) < 0.05, name
