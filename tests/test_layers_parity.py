"""[parity] The layers against PyTorch autograd, float64 (skipped without torch)."""
import numpy as np
import pytest

from eca_ref.functional.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from eca_ref.functional.conv import conv2d_backward, conv2d_forward
from eca_ref.functional.linear import linear_backward, linear_forward
from eca_ref.functional.loss import softmax_cross_entropy

torch = pytest.importorskip("torch")
TOL = dict(rtol=1e-10, atol=1e-10)


def _t(a):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("case", [(2, 3, 8, 7, 5, 3, 1, 1), (2, 4, 9, 9, 6, 3, 2, 1), (3, 4, 8, 8, 6, 1, 2, 0),
                                  (2, 3, 6, 6, 4, 5, 1, 2)])
def test_parity_conv2d(case):
    N, C, H, W, F, k, s, p = case
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, k, k)), rng.standard_normal(F)
    out, cache = conv2d_forward(x, w, b, stride=s, padding=p)
    dout = rng.standard_normal(out.shape)
    dx, grads = conv2d_backward(dout, cache)
    tx, tw, tb = _t(x), _t(w), _t(b)
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["weight"], tw.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["bias"], tb.grad.numpy(), **TOL)


@pytest.mark.parametrize("train", [True, False])
def test_parity_batchnorm2d(train):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 5, 5)) * 3 + 2
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    out, cache, stats = batchnorm2d_forward(x, g, b, rm, rv, train=train)
    dout = rng.standard_normal(x.shape)
    dx, grads = batchnorm2d_backward(dout, cache)
    bn = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(g))
        bn.bias.copy_(torch.tensor(b))
        bn.running_mean.copy_(torch.tensor(rm))
        bn.running_var.copy_(torch.tensor(rv))
    bn.train(train)
    tx = _t(x)
    tout = bn(tx)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), **TOL)
    np.testing.assert_allclose(stats.mean, bn.running_mean.numpy(), **TOL)
    np.testing.assert_allclose(stats.var, bn.running_var.numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["weight"], bn.weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["bias"], bn.bias.grad.numpy(), **TOL)


def test_parity_linear():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    out, cache = linear_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, grads = linear_backward(dout, cache)
    tx, tw, tb = _t(x), _t(w), _t(b)
    tout = torch.nn.functional.linear(tx, tw, tb)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["weight"], tw.grad.numpy(), **TOL)
    np.testing.assert_allclose(grads["bias"], tb.grad.numpy(), **TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_parity_cross_entropy(smoothing):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 10)) * 4
    t = rng.integers(0, 10, 6)
    loss, dz = softmax_cross_entropy(z, t, label_smoothing=smoothing)
    tz = _t(z)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t), label_smoothing=smoothing)
    tl.backward()
    assert abs(loss - tl.item()) < 1e-12
    np.testing.assert_allclose(dz, tz.grad.numpy(), **TOL)
