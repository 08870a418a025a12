"""[parity] every variant vs PyTorch autograd, float64. Skips cleanly without torch."""
import numpy as np
import pytest

from eca_ref import VARIANTS

torch = pytest.importorskip("torch")
F = torch.nn.functional

HP = {"se": {"r": 4}, "se-gc": {"groups": 4}}


def torch_f(name, y, p):
    """f(y) written with torch ops the usual way (Linear / Conv1d / einsum)."""
    if name == "se":
        h = F.relu(F.linear(y, p["w1"], p.get("b1")))
        return F.linear(h, p["w2"], p.get("b2"))
    if name == "se-var1":
        return y
    if name == "se-var2":
        return p["w"] * y
    if name == "se-var3":
        return F.linear(y, p["W"])
    if name == "se-gc":
        G, Cg, _ = p["W"].shape
        return torch.einsum("gij,ngj->ngi", p["W"], y.reshape(-1, G, Cg)).reshape(y.shape)
    if name in ("eca", "eca-band", "ceca"):
        k = p["w"].shape[0]
        pad = (k - 1) // 2
        y1 = y[:, None, :]  # (N, 1, C)
        if name == "ceca":
            y1 = F.pad(y1, (pad, pad), mode="circular")
            pad = 0
        return F.conv1d(y1, p["w"].reshape(1, 1, k), padding=pad)[:, 0, :]
    if name == "eca-ns":
        C, k = p["W"].shape
        pad = (k - 1) // 2
        cols = F.pad(y, (pad, pad)).unfold(1, k, 1)  # (N, C, k): window of channel i
        return (cols * p["W"]).sum(-1)
    raise AssertionError(name)


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "none"])
@pytest.mark.parametrize("C", [8, 16])
def test_forward_backward_match_torch(name, C):
    rng = np.random.default_rng(7)
    v = VARIANTS[name]
    params = v.init_params(C, rng=rng, **HP.get(name, {}))
    if name == "se":
        params = v.init_params(C, rng=rng, r=4, bias=True)
    x = rng.standard_normal((3, C, 4, 5))
    dout = rng.standard_normal(x.shape)
    out, cache = v.forward(x, params)
    dx, grads = v.backward(dout, cache)

    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(a, requires_grad=True) for k, a in params.items()}
    s = torch.sigmoid(torch_f(name, tx.mean(dim=(2, 3)), tp))
    tout = tx * s[:, :, None, None]
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-13)
    for k in params:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-13)
