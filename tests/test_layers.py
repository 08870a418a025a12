"""Layers of the tiny ResNet: conv2d, batchnorm2d, linear, softmax cross-entropy.

For each: vectorised == plain loop, a float64 central-difference gradient check of every input
and parameter against a random upstream gradient, PyTorch parity (float64), and bad input.
"""
import numpy as np
import pytest

from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.batchnorm import (batchnorm2d_backward, batchnorm2d_backward_loop, batchnorm2d_forward,
                                          batchnorm2d_forward_loop)
from eca_ref.functional.conv import (conv2d_backward, conv2d_backward_loop, conv2d_forward, conv2d_forward_loop,
                                     conv_output_size)
from eca_ref.functional.linear import linear_backward, linear_forward, linear_forward_loop
from eca_ref.functional.loss import (cross_entropy_backward, cross_entropy_forward, cross_entropy_loop,
                                     softmax_cross_entropy)
from eca_ref.gradcheck import eval_numerical_gradient_array, rel_error

# (N, C, H, W, F, kh, kw, stride, padding): odd/even sizes, strides 1-3, 1x1, padding beyond k - 1
CONV_CASES = [
    (2, 3, 5, 6, 4, 3, 3, 1, 1),
    (2, 3, 7, 5, 4, 3, 3, 2, 1),
    (2, 3, 6, 6, 4, 1, 1, 2, 0),
    (1, 2, 5, 5, 3, 3, 3, 1, 0),
    (2, 2, 5, 4, 3, 2, 2, 1, 2),
    (2, 3, 6, 7, 2, 3, 3, 3, 2),
    (1, 2, 4, 4, 2, 1, 1, 1, 0),
    (2, 2, 5, 6, 3, 3, 1, 1, 1),
    (2, 3, 8, 8, 4, 3, 3, 2, 0),     # stride 2 without padding: x's last row and column in no window
    (2, 2, 9, 7, 3, 5, 5, 2, 2),     # 5x5 at stride 2: windows overlap by 3
    (2, 2, 6, 5, 3, 2, 2, 2, 0),     # kernel = stride: windows touch, never overlap
    (1, 2, 7, 8, 2, 2, 3, 3, 1),     # kernel narrower than the stride: x values no window reads get dx = 0
    (2, 2, 1, 3, 2, 1, 1, 2, 0),     # a one-row image at stride 2
    (2, 2, 5, 5, 3, 3, 1, 2, 1),
    (1, 2, 3, 3, 2, 1, 1, 1, 1),     # padding >= kernel at stride 1 (exact columns and col2im)
]


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_matches_loop(case, bias):
    N, C, H, W, F, kh, kw, s, p = case
    rng = _rng()
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, kh, kw))
    b = rng.standard_normal(F) if bias else None
    out, cache = conv2d_forward(x, w, b, stride=s, padding=p)
    assert out.shape == (N, F, conv_output_size(H, kh, s, p), conv_output_size(W, kw, s, p))
    np.testing.assert_allclose(out, conv2d_forward_loop(x, w, b, stride=s, padding=p), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, grads = conv2d_backward(dout, cache)
    dx2, dw2, db2 = conv2d_backward_loop(dout, x, w, stride=s, padding=p)
    np.testing.assert_allclose(dx, dx2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["weight"], dw2, rtol=1e-12, atol=1e-12)
    assert ("bias" in grads) == bias
    if bias:
        np.testing.assert_allclose(grads["bias"], db2, rtol=1e-12, atol=1e-12)


def test_conv_float32_close_to_float64():
    rng = _rng(1)
    x = rng.standard_normal((4, 8, 9, 9))
    w = rng.standard_normal((6, 8, 3, 3))
    o64, _ = conv2d_forward(x, w, stride=1, padding=1)
    o32, _ = conv2d_forward(x.astype(np.float32), w.astype(np.float32), stride=1, padding=1)
    assert o32.dtype == np.float32
    np.testing.assert_allclose(o32, o64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[1], CONV_CASES[2], CONV_CASES[4]])
def test_conv_gradcheck(case):
    N, C, H, W, F, kh, kw, s, p = case
    rng = _rng(2)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, kh, kw))
    b = rng.standard_normal(F)
    out, cache = conv2d_forward(x, w, b, stride=s, padding=p)
    dout = rng.standard_normal(out.shape)
    dx, grads = conv2d_backward(dout, cache)

    def f():
        return conv2d_forward(x, w, b, stride=s, padding=p)[0]
    # element-wise relative error: an entry near zero carries the rounding of its large neighbours
    assert rel_error(dx, eval_numerical_gradient_array(f, x, dout)) < 1e-6
    assert rel_error(grads["weight"], eval_numerical_gradient_array(f, w, dout)) < 1e-6
    assert rel_error(grads["bias"], eval_numerical_gradient_array(f, b, dout)) < 1e-6


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_matches_loop(train):
    rng = _rng(3)
    x = rng.standard_normal((3, 4, 5, 2)) * 2 + 1
    g, b = rng.standard_normal(4), rng.standard_normal(4)
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    out, cache, stats = batchnorm2d_forward(x, g, b, rm, rv, train=train)
    out2, m2, v2 = batchnorm2d_forward_loop(x, g, b, rm, rv, train=train)
    np.testing.assert_allclose(out, out2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.mean, m2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.var, v2, rtol=1e-12, atol=1e-12)
    if train:
        dout = rng.standard_normal(x.shape)
        dx, grads = batchnorm2d_backward(dout, cache)
        dx2, dw2, db2 = batchnorm2d_backward_loop(dout, x, g)
        np.testing.assert_allclose(dx, dx2, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads["weight"], dw2, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads["bias"], db2, rtol=1e-10, atol=1e-12)


def test_batchnorm_does_not_mutate():
    rng = _rng(4)
    x = rng.standard_normal((2, 3, 2, 2))
    rm, rv = np.zeros(3), np.ones(3)
    _, _, stats = batchnorm2d_forward(x, np.ones(3), np.zeros(3), rm, rv, train=True)
    assert np.all(rm == 0) and np.all(rv == 1)
    assert not np.allclose(stats.mean, 0)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradcheck(train):
    rng = _rng(5)
    x = rng.standard_normal((2, 3, 3, 2))
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    out, cache, _ = batchnorm2d_forward(x, g, b, rm, rv, train=train)
    dout = rng.standard_normal(out.shape)
    dx, grads = batchnorm2d_backward(dout, cache)

    def f():
        return batchnorm2d_forward(x, g, b, rm, rv, train=train)[0]
    assert rel_error(dx, eval_numerical_gradient_array(f, x, dout)) < 1e-7
    assert rel_error(grads["weight"], eval_numerical_gradient_array(f, g, dout)) < 1e-7
    assert rel_error(grads["bias"], eval_numerical_gradient_array(f, b, dout)) < 1e-7


def test_linear_loop_and_gradcheck():
    rng = _rng(6)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    out, cache = linear_forward(x, w, b)
    np.testing.assert_allclose(out, linear_forward_loop(x, w, b), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, grads = linear_backward(dout, cache)

    def f():
        return linear_forward(x, w, b)[0]
    assert rel_error(dx, eval_numerical_gradient_array(f, x, dout)) < 1e-7
    assert rel_error(grads["weight"], eval_numerical_gradient_array(f, w, dout)) < 1e-7
    assert rel_error(grads["bias"], eval_numerical_gradient_array(f, b, dout)) < 1e-7
    _, cache = linear_forward(x, w)
    assert set(linear_backward(dout, cache)[1]) == {"weight"}


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_loop_and_gradcheck(smoothing):
    rng = _rng(7)
    z = rng.standard_normal((5, 4)) * 3
    t = np.array([0, 3, 1, 1, 2])
    loss, cache = cross_entropy_forward(z, t, label_smoothing=smoothing)
    assert abs(loss - cross_entropy_loop(z, t, label_smoothing=smoothing)) < 1e-12
    dz = cross_entropy_backward(1.7, cache)

    def f():
        return np.array(cross_entropy_forward(z, t, label_smoothing=smoothing)[0])
    assert rel_error(dz, eval_numerical_gradient_array(f, z, np.array(1.7))) < 1e-7
    loss2, dz2 = softmax_cross_entropy(z, t, label_smoothing=smoothing)
    assert loss2 == loss
    np.testing.assert_allclose(dz2 * 1.7, dz, rtol=1e-12)


def test_cross_entropy_is_stable():
    z = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], dtype=np.float32)
    loss, dz = softmax_cross_entropy(z, np.array([0, 1]))
    assert np.isfinite(loss) and np.all(np.isfinite(dz)) and abs(loss) < 1e-6
    loss, _ = softmax_cross_entropy(z, np.array([2, 0]))
    assert np.isfinite(loss) and loss > 1000


# ---------------------------------------------------------------- bad input

def test_conv_bad_input():
    x, w = np.zeros((1, 3, 4, 4)), np.zeros((2, 3, 3, 3))
    with pytest.raises(InputError, match="x must be 4-D"):
        conv2d_forward(np.zeros((3, 4, 4)), w)
    with pytest.raises(InputError, match="w must have shape .* C = 3"):
        conv2d_forward(x, np.zeros((2, 2, 3, 3)))
    with pytest.raises(InputTypeError, match="w must have the dtype of x"):
        conv2d_forward(x, w.astype(np.float32))
    with pytest.raises(InputTypeError, match="x must have dtype float32 or float64"):
        conv2d_forward(x.astype(np.int64), w)
    with pytest.raises(InputError, match="b must have shape"):
        conv2d_forward(x, w, np.zeros(3))
    with pytest.raises(InputError, match="stride must be >= 1"):
        conv2d_forward(x, w, stride=0)
    with pytest.raises(InputError, match="padding must be >= 0"):
        conv2d_forward(x, w, padding=-1)
    with pytest.raises(InputError, match="kernel .* larger than the padded input"):
        conv2d_forward(np.zeros((1, 3, 2, 2)), w)
    with pytest.raises(InputError, match="NaN or inf"):
        conv2d_forward(np.full((1, 3, 4, 4), np.nan), w)
    _, cache = conv2d_forward(x, w)
    with pytest.raises(InputError, match="dout must have shape"):
        conv2d_backward(np.zeros((1, 2, 3, 3)), cache)


def test_batchnorm_bad_input():
    x = np.zeros((2, 3, 2, 2))
    ones, zeros = np.ones(3), np.zeros(3)
    with pytest.raises(InputError, match="weight must have shape"):
        batchnorm2d_forward(x, np.ones(4), zeros, zeros, ones, train=True)
    with pytest.raises(InputTypeError, match="running_var must have the dtype of x"):
        batchnorm2d_forward(x, ones, zeros, zeros, ones.astype(np.float32), train=True)
    with pytest.raises(InputError, match="more than one value per channel"):
        batchnorm2d_forward(np.zeros((1, 3, 1, 1)), ones, zeros, zeros, ones, train=True)
    with pytest.raises(InputError, match="momentum"):
        batchnorm2d_forward(x, ones, zeros, zeros, ones, train=True, momentum=2.0)


def test_linear_and_loss_bad_input():
    with pytest.raises(InputError, match="w must have shape \\(out, 5\\)"):
        linear_forward(np.zeros((2, 5)), np.zeros((3, 4)))
    with pytest.raises(InputError, match="x must be 2-D"):
        linear_forward(np.zeros(5), np.zeros((3, 5)))
    z = np.zeros((2, 3))
    with pytest.raises(InputTypeError, match="target must have an integer dtype"):
        cross_entropy_forward(z, np.array([0.0, 1.0]))
    with pytest.raises(InputError, match="target values must be class indices in \\[0, 2\\]"):
        cross_entropy_forward(z, np.array([0, 3]))
    with pytest.raises(InputError, match="target must have shape \\(2,\\)"):
        cross_entropy_forward(z, np.array([0, 1, 2]))
    with pytest.raises(InputError, match="label_smoothing"):
        cross_entropy_forward(z, np.array([0, 1]), label_smoothing=1.0)
    with pytest.raises(InputError, match="logits contains NaN"):
        cross_entropy_forward(np.full((2, 3), np.inf), np.array([0, 1]))


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[1], CONV_CASES[4]])
def test_conv_without_input_grad_skips_dx_only(case):
    """input_grad=False (a network's first layer): dx is None, the parameter gradients are unchanged.
    (The engine's chunked im2col is compared with the loop in tests/test_engine.py.)"""
    _, C, H, W, F, kh, kw, s, p = case
    N = 7
    rng = _rng(8)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, kh, kw)), rng.standard_normal(F)
    out, cache = conv2d_forward(x, w, b, stride=s, padding=p)
    Ho, Wo = conv_output_size(H, kh, s, p), conv_output_size(W, kw, s, p)
    assert cache.cols.shape == (C * kh * kw, N * Ho * Wo)  # one column per receptive field
    dout = rng.standard_normal(out.shape)
    dx, grads = conv2d_backward(dout, cache)
    none, grads2 = conv2d_backward(dout, cache, input_grad=False)
    assert none is None and dx.shape == x.shape
    assert set(grads2) == set(grads) == {"weight", "bias"}
    assert all(np.array_equal(grads[k], grads2[k]) for k in grads)
    _, dw2, db2 = conv2d_backward_loop(dout, x, w, stride=s, padding=p)
    np.testing.assert_allclose(grads2["weight"], dw2, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(grads2["bias"], db2, rtol=1e-12, atol=1e-11)
