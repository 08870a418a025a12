"""[parity] The NumPy ResNet against an identical PyTorch model, float64 (skipped without torch)."""
import numpy as np
import pytest

from eca_ref.functional.loss import softmax_cross_entropy
from eca_ref.models import ResNetConfig, block_specs, init_resnet, resnet_backward, resnet_forward

torch = pytest.importorskip("torch")
nn = torch.nn


class TorchECA(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x):
        z = self.conv(x.mean((2, 3))[:, None, :])[:, 0]
        return x * torch.sigmoid(z)[:, :, None, None]


class TorchBlock(nn.Module):
    def __init__(self, spec, attention):
        super().__init__()
        self.conv1 = nn.Conv2d(spec.cin, spec.cout, 3, spec.stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.cout)
        self.conv2 = nn.Conv2d(spec.cout, spec.cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(spec.cout)
        self.attn = TorchECA(spec.attn_hp["k"]) if attention == "eca" else nn.Identity()
        self.shortcut = None
        if spec.projection:
            self.shortcut = nn.Sequential()
            self.shortcut.add_module("conv", nn.Conv2d(spec.cin, spec.cout, 1, spec.stride, bias=False))
            self.shortcut.add_module("bn", nn.BatchNorm2d(spec.cout))

    def forward(self, x):
        o = torch.relu(self.bn1(self.conv1(x)))
        o = self.attn(self.bn2(self.conv2(o)))
        return torch.relu(o + (x if self.shortcut is None else self.shortcut(x)))


class TorchResNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(3, cfg.width, 3, 1, 1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(cfg.width))
        self.blocks = nn.ModuleDict()
        for spec in block_specs(cfg):
            self.blocks[spec.name.replace(".", "_")] = TorchBlock(spec, cfg.attention)
        self.fc = nn.Linear(4 * cfg.width, cfg.num_classes)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        for block in self.blocks.values():
            h = block(h)
        return self.fc(h.mean((2, 3)))


def _torch_name(name):
    name = name.replace("attn.w", "attn.conv.weight")
    if name.startswith("stage"):
        stage, block, rest = name.split(".", 2)
        return f"blocks.{stage}_{block}.{rest}"
    return name


def _copy_into(model, params, buffers):
    state = model.state_dict()
    with torch.no_grad():
        for name, a in {**params, **buffers}.items():
            t = state[_torch_name(name)]
            t.copy_(torch.tensor(a).reshape(t.shape))


@pytest.mark.parametrize("attention", ["eca", "none"])
def test_parity_resnet(attention):
    cfg = ResNetConfig(depth=14, width=4, attention=attention)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    model = TorchResNet(cfg).double()
    assert sum(p.numel() for p in model.parameters()) == sum(a.size for a in params.values())
    _copy_into(model, params, buffers)
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
        np.testing.assert_allclose(g, tparams[_torch_name(name)].grad.numpy().reshape(g.shape), rtol=1e-7,
                                   atol=1e-10, err_msg=name)
    tstate = model.state_dict()
    for name, b in new_buffers.items():
        np.testing.assert_allclose(b, tstate[_torch_name(name)].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    # eval mode with the updated running statistics
    model.eval()
    elogits = resnet_forward(x, params, new_buffers, cfg, train=False)[0]
    np.testing.assert_allclose(elogits, model(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-10)
