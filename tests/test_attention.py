"""Every variant of the registry: gradients, loops, counts, shapes, errors."""
import math

import numpy as np
import pytest

from eca_ref import VARIANTS, band_matrix, kernel_size
from eca_ref.attention import Variant, band_grad_to_kernel
from eca_ref.attention import variants as se_family
from eca_ref.attention.eca import ConvCache, conv_f_backward, conv_f_forward
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.activations import sigmoid, sigmoid_backward, sigmoid_forward
from eca_ref.functional.pooling import gap_backward, gap_forward, gap_forward_loop
from eca_ref.gradcheck import eval_numerical_gradient_array, rel_error

HP = {"se": {"r": 4}, "se-gc": {"groups": 4}}
NAMES = list(VARIANTS)


def make(name, C, rng, dtype=np.float64, **hp):
    v = VARIANTS[name]
    return v, v.init_params(C, rng=rng, dtype=dtype, **{**HP.get(name, {}), **hp})


def test_registry_lists_every_variant_of_the_paper():
    assert NAMES == ["none", "se", "se-var1", "se-var2", "se-var3", "se-gc", "eca-ns", "eca", "eca-band", "ceca"]
    assert VARIANTS["eca"].formula == "σ(C1D_k(y))"
    assert VARIANTS["eca"].param_formula == "k"


def test_unknown_variant_lists_known_names():
    with pytest.raises(InputError, match="known: none, se, se-var1"):
        VARIANTS["eca2"]
    with pytest.raises(KeyError):
        VARIANTS["eca2"]


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_x_and_every_param(name, rng):
    v, params = make(name, 8, rng)
    x = rng.standard_normal((2, 8, 3, 4))
    out, cache = v.forward(x, params)
    dout = rng.standard_normal(out.shape)
    dx, grads = v.backward(dout, cache)
    assert set(grads) == set(params)
    f = lambda: v.forward(x, params)[0]  # noqa: E731
    assert rel_error(dx, eval_numerical_gradient_array(f, x, dout)) < 1e-7
    for key in params:
        assert grads[key].shape == params[key].shape
        assert rel_error(grads[key], eval_numerical_gradient_array(f, params[key], dout)) < 1e-7


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 8, 1, 1), (3, 16, 5, 3)])
def test_vectorised_forward_equals_loop(name, shape, rng):
    v, params = make(name, shape[1], rng)
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(v.forward(x, params)[0], v.forward_loop(x, params), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("C", [16, 64, 256])
def test_count_equals_init_size(name, C, rng):
    v = VARIANTS[name]
    params = v.init_params(C, rng=rng)
    assert v.count_params(C) == sum(a.size for a in params.values())


@pytest.mark.parametrize("C,expect", [(256, {"none": 0, "se": 8192, "se-var1": 0, "se-var2": 256, "se-var3": 65536,
                                             "se-gc": 4096, "eca-ns": 1280, "eca": 5, "eca-band": 5, "ceca": 5})])
def test_counts_match_the_paper_table(C, expect):
    # SE 2C^2/r, Var2 C, Var3 C^2, GC C^2/G (G=16), ECA-NS kC, ECA k, k = kernel_size(256) = 5
    assert {n: VARIANTS[n].count_params(C) for n in NAMES} == expect


@pytest.mark.parametrize("name", NAMES)
def test_count_is_the_sum_over_the_shapes(name):
    v = VARIANTS[name]
    for C in (16, 64):
        assert v.count_params(C) == sum(math.prod(shape) for shape in v.param_shapes(C).values())


def test_a_new_variant_is_declared_with_keywords(rng):
    toy = Variant(name="toy", formula="σ(w ⊙ y)", param_formula="C", description="SE-Var2 once more",
                  shapes=se_family.diagonal_shapes, fan_in=se_family.diagonal_fan_in,
                  f_forward=se_family.diagonal_f_forward, f_backward=se_family.diagonal_f_backward,
                  f_loop=se_family.diagonal_f_loop)
    params = toy.init_params(8, rng=rng)
    x = rng.standard_normal((2, 8, 3, 3))
    assert toy.count_params(8) == 8 and toy.hp_defaults == {}
    np.testing.assert_array_equal(toy.forward(x, params)[0], VARIANTS["se-var2"].forward(x, params)[0])


def test_se_with_bias_counts_biases(rng):
    v = VARIANTS["se"]
    assert v.count_params(64, r=16, bias=True) == 2 * 64 * 4 + 4 + 64
    p = v.init_params(64, rng=rng, bias=True)
    assert sorted(p) == ["b1", "b2", "w1", "w2"]


@pytest.mark.parametrize("name", NAMES)
def test_output_keeps_shape_and_dtype(name, rng):
    v, params = make(name, 8, rng, dtype=np.float32)
    x = rng.standard_normal((2, 8, 4, 4)).astype(np.float32)
    out, cache = v.forward(x, params)
    assert out.shape == x.shape and out.dtype == np.float32
    dx, grads = v.backward(np.ones_like(out), cache)
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    gate = v.gate(x, params)
    assert gate.shape == (2, 8)
    np.testing.assert_allclose(out, x * gate[:, :, None, None], rtol=1e-6)


def test_gate_is_sigmoid_of_conv_of_gap(rng):
    """ECA's gate computed independently: mean, explicit cross-correlation with padding, logistic."""
    x = rng.standard_normal((2, 6, 3, 3))
    w = np.array([0.3, -1.2, 0.7])
    y = x.mean(axis=(2, 3))
    ypad = np.pad(y, ((0, 0), (1, 1)))
    z = np.stack([ypad[:, i:i + 3] @ w for i in range(6)], axis=1)
    expect = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(VARIANTS["eca"].gate(x, {"w": w}), expect, rtol=1e-14)


def test_backward_adds_both_paths(rng):
    """dx = dout * s (rescale) + dy / HW (GAP); without the GAP path the gradient check fails."""
    v, params = make("eca", 8, rng)
    x = rng.standard_normal((2, 8, 3, 3))
    out, cache = v.forward(x, params)
    dout = rng.standard_normal(out.shape)
    dx, _ = v.backward(dout, cache)
    rescale_only = dout * cache.s[:, :, None, None]
    num = eval_numerical_gradient_array(lambda: v.forward(x, params)[0], x, dout)
    assert rel_error(dx, num) < 1e-7
    assert rel_error(rescale_only, num) > 1e-3
    # the difference is constant over H, W: the GAP path
    diff = dx - rescale_only
    np.testing.assert_allclose(diff, np.broadcast_to(diff[:, :, :1, :1], diff.shape), atol=1e-15)


@pytest.mark.parametrize("N,C,k", [(2, 16, 3), (3, 7, 3), (1, 2, 3), (1, 4, 5), (2, 1, 1), (4, 65, 7)])
def test_band_and_conv_are_the_same_function(N, C, k, rng):
    x = rng.standard_normal((N, C, 2, 3))
    params = VARIANTS["eca"].init_params(C, rng=rng, k=k)
    o1, c1 = VARIANTS["eca"].forward(x, params)
    o2, c2 = VARIANTS["eca-band"].forward(x, params)
    dout = rng.standard_normal(x.shape)
    (dx1, g1), (dx2, g2) = VARIANTS["eca"].backward(dout, c1), VARIANTS["eca-band"].backward(dout, c2)
    assert np.abs(o1 - o2).max() < 1e-14
    assert np.abs(dx1 - dx2).max() < 1e-14
    assert np.abs(g1["w"] - g2["w"]).max() < 1e-13


def test_band_matrix_entries():
    w = np.array([1.0, 2.0, 3.0])
    B = band_matrix(w, 4)
    expect = np.array([[2, 3, 0, 0], [1, 2, 3, 0], [0, 1, 2, 3], [0, 0, 1, 2]], dtype=float)
    np.testing.assert_array_equal(B, expect)
    Bc = band_matrix(w, 4, circular=True)
    np.testing.assert_array_equal(Bc, expect + np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [3, 0, 0, 0.]]))
    y = np.array([1.0, -2.0, 0.5, 4.0])
    # torch.nn.Conv1d convention: z_i = sum_j w_j y_{i+j-1}
    assert np.allclose(B @ y, [2 * 1 + 3 * -2, 1 * 1 + 2 * -2 + 3 * 0.5, 1 * -2 + 2 * 0.5 + 3 * 4, 1 * 0.5 + 2 * 4])


def test_band_matrix_per_channel_rows():
    W = np.arange(12.0).reshape(4, 3)
    B = band_matrix(W, 4)
    assert B[0, 0] == 1 and B[0, 1] == 2 and B[1, 0] == 3 and B[3, 2] == 9 and B[3, 3] == 10


@pytest.mark.parametrize("circular", [False, True])
def test_gradient_map_by_diagonal_sums(circular, rng):
    y, dz = rng.standard_normal((5, 9)), rng.standard_normal((5, 9))
    w = rng.standard_normal(5)
    _, dw = conv_f_backward(dz, ConvCache(y, w, circular))
    np.testing.assert_allclose(band_grad_to_kernel(dz.T @ y, 5, circular=circular), dw, atol=1e-13)
    if not circular:
        W = rng.standard_normal((9, 5))
        _, dW = conv_f_backward(dz, ConvCache(y, W, False))
        np.testing.assert_allclose(band_grad_to_kernel(dz.T @ y, 5, shared=False), dW, atol=1e-13)


def test_ceca_wraps_around(rng):
    y = rng.standard_normal((1, 5))
    w = np.array([1.0, 0.0, 0.0])  # reads y_{i-1}
    z, _ = conv_f_forward(y, w, circular=True)
    np.testing.assert_array_equal(z, np.roll(y, 1, axis=1))
    z0, _ = conv_f_forward(y, w)
    assert z0[0, 0] == 0.0 and z0[0, 1] == y[0, 0]


def test_gap_and_sigmoid_gradients(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    y, cache = gap_forward(x)
    np.testing.assert_allclose(y, gap_forward_loop(x), atol=1e-15)
    dy = rng.standard_normal(y.shape)
    assert rel_error(gap_backward(dy, cache), eval_numerical_gradient_array(lambda: gap_forward(x)[0], x, dy)) < 1e-8
    z = rng.standard_normal((4, 6)) * 4
    s, cache = sigmoid_forward(z)
    ds = rng.standard_normal(s.shape)
    assert rel_error(sigmoid_backward(ds, cache),
                     eval_numerical_gradient_array(lambda: sigmoid_forward(z)[0], z, ds)) < 1e-7


def test_sigmoid_is_stable_for_large_logits():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(z)
    np.testing.assert_allclose(s, [0.0, 1 / (1 + math.exp(50)), 0.5, 1 / (1 + math.exp(-50)), 1.0], rtol=1e-15)


def test_gradcheck_refuses_float32():
    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(InputTypeError, match="float64"):
        eval_numerical_gradient_array(lambda: x, x, np.ones(3))


# ------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((2, 8, 3)), InputError, r"x must be 4-D \(N, C, H, W\)"),
    (np.zeros((2, 8, 3, 3), dtype=np.int64), InputTypeError, "x must have dtype float32 or float64"),
    (np.zeros((2, 8, 3, 3), dtype=np.complex128), InputTypeError, "dtype float32 or float64"),
    ([[1.0]], InputTypeError, "x must be an array"),
    (np.full((2, 8, 3, 3), np.nan), InputError, "x contains NaN or inf"),
    (np.zeros((2, 4, 3, 3)), InputError, r"params\['w'\] must have shape \(5,\)|params"),
])
def test_forward_rejects_bad_x(bad, exc, match, rng):
    params = VARIANTS["eca"].init_params(8, rng=rng, k=5)
    if isinstance(bad, np.ndarray) and bad.shape == (2, 4, 3, 3):
        bad_params = VARIANTS["eca-ns"].init_params(8, rng=rng)
        with pytest.raises(InputError, match=r"params\['W'\] must have shape \(4, 3\)"):
            VARIANTS["eca-ns"].forward(bad, bad_params)
        return
    with pytest.raises(exc, match=match):
        VARIANTS["eca"].forward(bad, params)


def test_nan_check_can_be_switched_off(rng):
    x = np.full((1, 8, 2, 2), np.nan)
    out, _ = VARIANTS["eca"].forward(x, VARIANTS["eca"].init_params(8, rng=rng), check_finite=False)
    assert np.isnan(out).all()


@pytest.mark.parametrize("name,params,match", [
    ("eca", {}, r"params must hold 'w'"),
    ("eca", {"w": np.ones(4)}, "k must be odd"),
    ("eca", {"w": np.ones((3, 1))}, r"params\['w'\] must be 1-D"),
    ("eca", {"w": np.ones(3), "b": np.ones(1)}, "unexpected \\['b'\\]"),
    ("se", {"w1": np.ones((2, 8)), "w2": np.ones((8, 3))}, r"params\['w2'\] must have shape \(8, 2\)"),
    ("se-gc", {"W": np.ones((3, 2, 2))}, "groups must divide C = 8"),
    ("eca", {"w": np.ones(3, dtype=np.float32)}, "must have the dtype of x"),
    ("eca", "w", "params must be a dict"),
])
def test_forward_rejects_bad_params(name, params, match):
    x = np.ones((1, 8, 2, 2))
    with pytest.raises((InputError, InputTypeError), match=match):
        VARIANTS[name].forward(x, params)


@pytest.mark.parametrize("name,hp,match", [
    ("eca", {"k": 4}, "k must be odd"),
    ("eca", {"k": 0}, "k must be >= 1"),
    ("eca", {"k": 17}, "k must be <= 2C - 1 = 15"),
    ("eca", {"k": 3.0}, "k must be an integer"),
    ("se", {"r": 9}, "r .* must be <= C = 8"),
    ("se", {"r": 0}, "r must be >= 1"),
    ("se-gc", {"groups": 3}, "groups must divide C = 8"),
    ("se", {"reduction": 4}, "unknown hyper-parameter"),
])
def test_bad_hyper_parameters(name, hp, match, rng):
    with pytest.raises((InputError, InputTypeError), match=match):
        VARIANTS[name].init_params(8, rng=rng, **hp)
    with pytest.raises((InputError, InputTypeError), match=match):
        VARIANTS[name].count_params(8, **hp)


def test_bad_channel_count():
    with pytest.raises(InputError, match="C must be >= 1"):
        VARIANTS["eca"].count_params(0)
    with pytest.raises(InputError, match="C must be >= 1"):
        kernel_size(-4)


def test_backward_rejects_wrong_dout(rng):
    v, params = make("eca", 8, rng)
    out, cache = v.forward(rng.standard_normal((2, 8, 3, 3)), params)
    with pytest.raises(InputError, match=r"dout must have shape \(2, 8, 3, 3\)"):
        v.backward(np.ones((2, 8, 3)), cache)
    with pytest.raises(InputTypeError, match="dout must have the dtype of x"):
        v.backward(np.ones(out.shape, dtype=np.float32), cache)
