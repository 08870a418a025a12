"""The engine (eca_ref.engine) is proved equal to the reference: every layer and the whole model give
the reference's outputs, input gradients and parameter gradients, for every attention variant.

Tolerances are relative to each array's largest entry (an atol scaled to its magnitude, so a value
near zero carries the rounding of its large neighbours). Measured differences (the same sums added
in another order): float64 at most about 6e-15 (layers and whole model, threads or processes);
float32 at most about 4e-7 on one layer, 3e-6 on logits and gradients of the whole model. Asserted: float64 1e-12,
float32 1e-4. The worker processes are tested in tests/test_engine_processes.py.
"""
import threading

import numpy as np
import pytest

from eca_ref.attention import VARIANTS
from eca_ref.engine import blas, cores
from eca_ref.engine import conv as engine_conv
from eca_ref.engine.batchnorm import batchnorm2d_backward as fast_bn_backward
from eca_ref.engine.batchnorm import batchnorm2d_forward as fast_bn_forward
from eca_ref.engine.conv import conv2d_backward as fast_conv_backward
from eca_ref.engine.conv import conv2d_forward as fast_conv_forward
from eca_ref.engine.layers import FAST_LAYERS, fast_layers
from eca_ref.engine.runner import MIN_SHARD, ShardedCache
from eca_ref.engine.shards import AllReduce, run_shards, split
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional.activations import relu_backward, relu_forward
from eca_ref.functional.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from eca_ref.functional.conv import conv2d_backward, conv2d_backward_loop, conv2d_forward, conv2d_forward_loop
from eca_ref.models import REFERENCE_LAYERS, Layers, ResNetCache, ResNetConfig, init_resnet, resnet_backward, resnet_forward

RTOL = {np.float64: 1e-12, np.float32: 1e-4}
DTYPES = [np.float64, np.float32]


def assert_close(got, want, dtype, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype == dtype, what
    rtol = RTOL[dtype]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max(initial=0.0)), err_msg=what)


def channel_major(a):
    """a's values in (C, N, H, W) memory: how the engine's convolutions hand over their outputs."""
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def strided(a):
    """a's values as a view with gaps between its rows (like a cropped stride-1 conv output)."""
    big = np.zeros(a.shape[:3] + (a.shape[3] + 3,), dtype=a.dtype)
    big[..., :a.shape[3]] = a
    return big[..., :a.shape[3]]


LAYOUTS = {"nchw": lambda a: a, "channel-major": channel_major, "strided": strided}

# ------------------------------------------------------------------ layer by layer

# (N, C, H, W, F, kh, kw, stride, padding): "same" 3x3, strides 1-3, 1x1, padding beyond k - 1, odd sizes
CONV_CASES = [(3, 4, 9, 7, 5, 3, 3, 1, 1), (2, 3, 8, 8, 4, 3, 3, 2, 1), (2, 6, 7, 5, 3, 1, 1, 2, 0),
              (3, 2, 6, 6, 4, 3, 3, 1, 0), (2, 4, 9, 9, 3, 5, 5, 1, 2), (2, 5, 10, 9, 3, 5, 5, 3, 2),
              (2, 2, 5, 4, 3, 2, 2, 1, 2), (1, 2, 7, 8, 2, 2, 3, 3, 1), (1, 2, 3, 3, 2, 1, 1, 1, 1),
              (4, 8, 8, 8, 8, 1, 1, 1, 0)]


def _conv_data(case, dtype, seed=3):
    N, C, H, W, F, kh, kw, s, p = case
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, kh, kw)), rng.standard_normal(F)
    return x.astype(dtype), w.astype(dtype), b.astype(dtype), s, p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_equals_reference(case, bias, layout, dtype):
    x, w, b, s, p = _conv_data(case, dtype)
    b = b if bias else None
    want, cache = conv2d_forward(x, w, b, stride=s, padding=p)
    got, fcache = fast_conv_forward(LAYOUTS[layout](x), w, b, stride=s, padding=p)
    assert_close(got, want, dtype, "out")
    dout = np.random.default_rng(4).standard_normal(want.shape).astype(dtype)
    dx, grads = conv2d_backward(dout, cache)
    fdout = LAYOUTS[layout](dout)
    fdx, fgrads = fast_conv_backward(fdout, fcache)
    assert np.array_equal(fdout, dout)  # not written into
    assert_close(fdx, dx, dtype, "dx")
    assert set(fgrads) == set(grads) == ({"weight", "bias"} if bias else {"weight"})
    for k in grads:
        assert_close(fgrads[k], grads[k], dtype, k)
    none, fgrads2 = fast_conv_backward(fdout, fcache, input_grad=False)
    assert none is None and all(np.array_equal(fgrads2[k], fgrads[k]) for k in fgrads)


@pytest.mark.parametrize("case", CONV_CASES[:6])
def test_conv_chunked_path_equals_the_loop(case, monkeypatch):
    """Chunks of at most 40 columns and 200 values (a shorter last one; whole images per chunk for
    stride > 1, col2im over chunks of images): the same numbers as the definition."""
    monkeypatch.setattr(engine_conv, "CHUNK_COLUMNS", 40)
    monkeypatch.setattr(engine_conv, "CHUNK_ELEMENTS", 200)
    monkeypatch.setattr(engine_conv, "CHUNK_THREADED_FACTOR", 1)  # small chunks even where BLAS may thread
    x, w, b, s, p = _conv_data((7,) + case[1:], np.float64, seed=8)  # 7 images
    out, cache = fast_conv_forward(x, w, b, stride=s, padding=p)
    assert 7 * out.shape[2] * out.shape[3] > 40  # several chunks
    assert_close(out, conv2d_forward_loop(x, w, b, stride=s, padding=p), np.float64, "out")
    dout = np.random.default_rng(9).standard_normal(out.shape)
    dx, grads = fast_conv_backward(dout, cache)
    dx2, dw2, db2 = conv2d_backward_loop(dout, x, w, stride=s, padding=p)
    for got, want, what in ((dx, dx2, "dx"), (grads["weight"], dw2, "weight"), (grads["bias"], db2, "bias")):
        assert_close(got, want, np.float64, what)


def test_blas_may_thread(monkeypatch):  # the conv's chunks are larger where BLAS may run several threads
    for var, value in (("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", ""), ("MKL_NUM_THREADS", "")):
        monkeypatch.setenv(var, value)
    assert not engine_conv._blas_may_thread()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert engine_conv._blas_may_thread()
    with blas.one_thread() as single:
        assert engine_conv._blas_may_thread() != single and blas.single_threaded() == single


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_equals_reference(train, layout, dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 5, 4, 3)) * 3 + 2).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 5).astype(dtype), rng.standard_normal(5).astype(dtype)
    rm, rv = rng.standard_normal(5).astype(dtype), rng.uniform(0.5, 2, 5).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    want, cache, stats = batchnorm2d_forward(x, gamma, beta, rm, rv, train=train)
    got, fcache, fstats = fast_bn_forward(LAYOUTS[layout](x), gamma, beta, rm, rv, train=train)
    assert_close(got, want, dtype, "out")
    assert_close(fstats.mean, stats.mean, dtype, "running mean")
    assert_close(fstats.var, stats.var, dtype, "running var")
    dx, grads = batchnorm2d_backward(dout, cache)
    fdout = LAYOUTS[layout](dout.copy())
    fdx, fgrads = fast_bn_backward(fdout, fcache)
    assert np.array_equal(fdout, dout)  # left unchanged by default
    assert_close(fdx, dx, dtype, "dx")
    for k in ("weight", "bias"):
        assert_close(fgrads[k], grads[k], dtype, k)
    odx, ograds = fast_bn_backward(fdout, fcache, overwrite_dout=True)  # dx in dout's memory: the same values
    assert np.array_equal(odx, fdx) and all(np.array_equal(ograds[k], fgrads[k]) for k in fgrads)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_relu_and_add_equal_reference(layout):
    rng = np.random.default_rng(6)
    a, b, da = (rng.standard_normal((3, 4, 5, 6)) for _ in range(3))
    out, cache = relu_forward(a)
    fa = LAYOUTS[layout](a.copy())
    fout, fcache = FAST_LAYERS.relu_forward(fa)           # written into its input (the pass owns it)
    assert np.array_equal(fout, out) and fout is fa
    fda = LAYOUTS[layout](da.copy())
    assert np.array_equal(FAST_LAYERS.relu_backward(fda, fcache), relu_backward(da, cache))
    fa = LAYOUTS[layout](a.copy())
    assert np.array_equal(FAST_LAYERS.add(fa, b), REFERENCE_LAYERS.add(a, b))


def test_the_engines_layers_are_a_bundle():
    assert isinstance(FAST_LAYERS, Layers) and FAST_LAYERS._fields == REFERENCE_LAYERS._fields
    assert FAST_LAYERS.bn_forward.keywords["allreduce"] is None
    reduce = AllReduce(1).for_shard(0)
    assert fast_layers(reduce).bn_forward.keywords["allreduce"] is reduce


# ------------------------------------------------------------------ shards and synchronised batch norm

def test_split():
    assert split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split(2, 5) == [(0, 1), (1, 2)]
    assert split(7, 1) == [(0, 7)]
    for total in range(1, 30):
        for parts in range(1, 6):
            r = split(total, parts)
            assert r[0][0] == 0 and r[-1][1] == total and all(a < b for a, b in r)
            assert all(r[i][1] == r[i + 1][0] for i in range(len(r) - 1))
            assert max(b - a for a, b in r) - min(b - a for a, b in r) <= 1


def test_allreduce_sums_in_shard_order_gathers_and_checks():
    def shard(i, reduce):
        first = reduce(np.array([1.0, 2.0]) * (i + 1))
        every = reduce.gather(np.array([i, 10.0 * i]))  # the slot sets alternate across both kinds of call
        second = reduce(np.array([10.0 ** i]))
        return first, every, second

    reducer = AllReduce(3)
    for first, every, second in run_shards(shard, 3, reducer=reducer):
        assert np.array_equal(first, [6.0, 12.0]) and np.array_equal(second, [111.0])
        assert np.array_equal(every, [[0, 0], [1, 10], [2, 20]])
    # shard order: (a + b) + c, not a + (b + c)
    parts = [np.array([1.0]), np.array([1e16]), np.array([-1e16])]
    assert run_shards(lambda i, reduce: reduce(parts[i]), 3)[0][0] == 0.0
    with pytest.raises(InputError, match="reducer must be an AllReduce of 2 shards"):
        run_shards(shard, 2, reducer=reducer)
    with pytest.raises(InputError, match="n must be"):
        AllReduce(0)
    alone = AllReduce(1).for_shard(0)
    assert np.array_equal(alone.gather(np.array([4.0, 5.0])), [[4.0, 5.0]])
    assert np.array_equal(alone(np.array([4.0])), [4.0])


def test_a_failing_shard_stops_the_others_and_its_error_propagates():
    def shard(i, reduce):
        if i == 1:
            raise ValueError("shard 1 failed")
        return reduce(np.ones(2))  # would wait for shard 1 forever without the abort

    done = []
    worker = threading.Thread(target=lambda: done.append(pytest.raises(ValueError, run_shards, shard, 3)))
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "run_shards hung on a failed shard"
    assert "shard 1 failed" in str(done[0].value)
    big = np.ones((4, 3))
    big[2:] = 1e300
    with np.errstate(over="raise"):  # a shard thread runs in a copy of the caller's context (NumPy's errstate)
        with pytest.raises(FloatingPointError):
            run_shards(lambda i, reduce: big[2 * i:2 * i + 2] * 1e300, 2)  # overflows in shard 1 only


@pytest.mark.parametrize("shards, scale, offset", [(2, 2.0, 3.0), (3, 2.0, 3.0), (2, 1e-3, 50.0)])
def test_synchronised_batchnorm_equals_whole_batch(shards, scale, offset):
    rng = np.random.default_rng(7)
    # the last case: a mean 50,000 standard deviations away from 0 (the combination must not cancel)
    x = rng.standard_normal((7, 5, 3, 4)) * scale + offset + np.arange(7)[:, None, None, None] * scale
    dout = rng.standard_normal(x.shape)
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    rm, rv = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    whole = fast_bn_forward(x, gamma, beta, rm, rv, train=True)
    ref = batchnorm2d_forward(x, gamma, beta, rm, rv, train=True)
    bounds = split(7, shards)

    def shard(i, reduce):
        a, b = bounds[i]
        out, cache, stats = fast_bn_forward(x[a:b], gamma, beta, rm, rv, train=True, allreduce=reduce)
        dx, g = fast_bn_backward(dout[a:b], cache)
        return out, stats, dx, g

    parts = run_shards(shard, shards)
    # float64 rounding of x (its ulp near the offset) is amplified by 1 / std in the normalised values
    tol = 1e-12 * max(1.0, offset / scale)
    for out1, c1, s1 in (whole, ref):
        dx1, g1 = (fast_bn_backward if c1 is whole[1] else batchnorm2d_backward)(dout, c1)
        np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), out1, rtol=1e-12, atol=tol)
        np.testing.assert_allclose(np.concatenate([p[2] for p in parts]), dx1, rtol=1e-11, atol=tol)
        for p in parts:  # every shard has the whole batch's running statistics (unbiased: M = 7 * 12)
            np.testing.assert_allclose(p[1].mean, s1.mean, rtol=1e-13)
            np.testing.assert_allclose(p[1].var, s1.var, rtol=1e-13)
        for k in ("weight", "bias"):  # each shard's share; their sum is the batch's gradient
            np.testing.assert_allclose(sum(p[3][k] for p in parts), g1[k], rtol=1e-12, atol=tol)
            assert not np.allclose(parts[0][3][k], g1[k])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_one_exchange_equals_two_reductions_bit_for_bit(dtype):
    # the forward pass gathers (sum, M2, count) once where it can; a reduce function without
    # gather takes the two-reduction path: the same numbers, bit for bit
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((13, 6, 5, 5)) * 3 + 40).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 6).astype(dtype), rng.standard_normal(6).astype(dtype)
    rm, rv = np.zeros(6, dtype), np.ones(6, dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    bounds = split(13, 3)

    def run(plain):
        def shard(i, reduce):
            a, b = bounds[i]
            fn = (lambda v: reduce(v)) if plain else reduce
            assert hasattr(fn, "gather") != plain
            out, cache, stats = fast_bn_forward(x[a:b], gamma, beta, rm, rv, train=True, allreduce=fn)
            dx, g = fast_bn_backward(dout[a:b], cache)
            return out, stats.mean, stats.var, cache.shift, dx, g["weight"], g["bias"]
        return run_shards(shard, 3)

    for once, twice in zip(run(False), run(True)):
        assert all(np.array_equal(u, v) for u, v in zip(once, twice))


# ------------------------------------------------------------------ the whole model, every attention variant

def _net(attention, dtype, batch=20, size=8, width=4, depth=8, seed=0):
    cfg = ResNetConfig(depth=depth, width=width, attention=attention)
    rng = np.random.default_rng(seed)
    params, buffers = init_resnet(cfg, rng, dtype=dtype)
    buffers = {k: (a + rng.uniform(0.1, 0.5, a.shape)).astype(dtype) for k, a in buffers.items()}  # not 0 / 1
    x = rng.standard_normal((batch, 3, size, size)).astype(dtype)
    dlogits = rng.standard_normal((batch, cfg.num_classes)).astype(dtype)
    return cfg, params, buffers, x, dlogits


def _with_input_grad(layers, captured):
    """The bundle, whose conv backward also computes the stem's dx (the model skips it: images need none)."""
    def conv_backward(dout, cache, *, input_grad=True):
        dx, g = layers.conv_backward(dout, cache, input_grad=True)
        if not input_grad:
            captured["dx"] = dx
        return (dx if input_grad else None), g
    return layers._replace(conv_backward=conv_backward)


def _model_passes(net, layers):
    cfg, params, buffers, x, dlogits = net
    out, captured = {}, {}
    for train in (True, False):
        logits, cache, new_buffers = resnet_forward(x, params, buffers, cfg, train=train,
                                                    layers=_with_input_grad(layers, captured))
        assert isinstance(cache, ResNetCache)
        out[train] = (logits, new_buffers, resnet_backward(dlogits, cache), captured.pop("dx"))
    return out


def _assert_runs_equal(got, want, dtype):
    for train in want:
        logits, new_buffers, grads, dx = got[train]
        wlogits, wbuffers, wgrads, wdx = want[train]
        assert_close(logits, wlogits, dtype, f"logits train={train}")
        if dx is not None:
            assert_close(dx, wdx, dtype, "input gradient")
        assert list(grads) == list(wgrads) and new_buffers.keys() == wbuffers.keys()
        for k in wgrads:
            assert_close(grads[k], wgrads[k], dtype, f"{k} train={train}")
        for k in wbuffers:
            assert_close(new_buffers[k], wbuffers[k], dtype, f"{k} train={train}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("attention", list(VARIANTS))
def test_model_with_the_engines_layers_equals_reference(attention, dtype):
    net = _net(attention, dtype, size=8 if dtype == np.float64 else 16, width=4 if dtype == np.float64 else 8)
    _assert_runs_equal(_model_passes(net, FAST_LAYERS), _model_passes(net, REFERENCE_LAYERS), dtype)


def _runner_passes(runner, net):
    cfg, params, buffers, x, dlogits = net
    out = {}
    for train in (True, False):
        logits, cache, new_buffers = runner.forward(x, params, buffers, cfg, train=train)
        out[train] = (logits, new_buffers, runner.backward(dlogits, cache), None)
    return out, cache


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("attention", list(VARIANTS))
def test_runner_on_two_threads_equals_reference(attention, dtype):
    net = _net(attention, dtype)  # 20 images: shards of 10 (MIN_SHARD = 8)
    want = _model_passes(net, REFERENCE_LAYERS)
    with cores(2, "threads") as runner:
        assert (runner.engine, runner.n, runner.workers, runner.pool) == ("fast", 2, "threads", None)
        got, cache = _runner_passes(runner, net)
        again, _ = _runner_passes(runner, net)
    if blas.blas_control() is not None:
        assert isinstance(cache, ShardedCache) and cache.bounds == ((0, 10), (10, 20)) and len(cache.caches) == 2
        assert isinstance(cache.reducer, AllReduce) and cache.caches[0].layers is not FAST_LAYERS
    _assert_runs_equal(got, want, dtype)
    for train in got:  # deterministic: the same shards give the same bits
        assert np.array_equal(got[train][0], again[train][0])
        assert all(np.array_equal(got[train][2][k], again[train][2][k]) for k in got[train][2])


def test_a_batch_too_small_to_shard_runs_in_one_piece():
    net = _net("eca", np.float64, batch=2 * MIN_SHARD - 1)
    with cores(3, "threads") as runner:
        got, cache = _runner_passes(runner, net)
    assert isinstance(cache, ResNetCache) and cache.layers is FAST_LAYERS
    want = _model_passes(net, FAST_LAYERS)
    for train in got:
        assert np.array_equal(got[train][0], want[train][0])
        assert all(np.array_equal(got[train][2][k], want[train][2][k]) for k in want[train][2])


def test_the_reference_engine_runs_the_plain_code():
    net = _net("eca", np.float64)
    cfg, params, buffers, x, dlogits = net
    with cores(2, "processes", engine="reference") as runner:
        assert (runner.engine, runner.n, runner.workers, runner.pool) == ("reference", 1, "none", None)
        assert not blas.single_threaded()  # BLAS is left as it is
        logits, cache, new_buffers = runner.forward(x, params, buffers, cfg, train=True)
        grads = runner.backward(dlogits, cache)
    assert type(cache) is ResNetCache and cache.layers is REFERENCE_LAYERS
    want_logits, want_cache, want_buffers = resnet_forward(x, params, buffers, cfg, train=True)
    want = resnet_backward(dlogits, want_cache)
    assert np.array_equal(logits, want_logits)
    assert all(np.array_equal(grads[k], want[k]) for k in want)
    assert all(np.array_equal(new_buffers[k], want_buffers[k]) for k in want_buffers)


def test_runner_refuses_a_foreign_cache_and_bad_inputs():
    cfg, params, buffers, x, dlogits = _net("eca", np.float64)
    with cores(2, "threads") as runner:
        with pytest.raises(InputTypeError, match="cache must be the cache this runner's forward returned"):
            runner.backward(dlogits, {"not": "a cache"})
        with pytest.raises(InputTypeError, match="cfg must be a ResNetConfig"):
            runner.forward(x, params, buffers, {"depth": 8}, train=True)
        _, cache, _ = runner.forward(x, params, buffers, cfg, train=True)
        with pytest.raises(InputError, match="dlogits must have shape"):
            runner.backward(dlogits[:3], cache)
