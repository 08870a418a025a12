"""eca_ref.parallel: the work split over threads gives the serial results, and the context manager
restores what it changed."""
import threading
import warnings

import numpy as np
import pytest

from eca_ref import parallel
from eca_ref.attention import VARIANTS
from eca_ref.errors import InputError, InputTypeError
from eca_ref.functional import conv as conv_mod
from eca_ref.functional.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from eca_ref.functional.conv import conv2d_backward, conv2d_forward, conv2d_forward_loop
from eca_ref.functional.loss import softmax_cross_entropy
from eca_ref.models import ResNetConfig, init_resnet, resnet_backward, resnet_forward


@pytest.fixture(autouse=True)
def split_small_jobs(monkeypatch):
    """Split even the tiny test arrays (by default jobs under parallel.MIN_WORK run in one piece)."""
    monkeypatch.setattr(parallel, "MIN_WORK", 1)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 40 columns, so that even the small test arrays are split over the threads."""
    monkeypatch.setattr(conv_mod, "CHUNK_COLUMNS", 40)
    monkeypatch.setattr(conv_mod, "CHUNK_THREADED_FACTOR", 1)


def test_split_keeps_small_jobs_whole(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_WORK", 100)
    assert parallel.split(8, 4, work=99) == [(0, 8)]
    assert parallel.split(8, 4, work=250) == [(0, 4), (4, 8)]
    assert parallel.split(8, 4, work=10**6) == [(0, 2), (2, 4), (4, 6), (6, 8)]


def test_split():
    assert parallel.split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert parallel.split(2, 5) == [(0, 1), (1, 2)]
    assert parallel.split(7, 1) == [(0, 7)]
    for total in range(1, 30):
        for parts in range(1, 6):
            r = parallel.split(total, parts)
            assert r[0][0] == 0 and r[-1][1] == total and all(a < b for a, b in r)
            assert all(r[i][1] == r[i + 1][0] for i in range(len(r) - 1))
            assert max(b - a for a, b in r) - min(b - a for a, b in r) <= 1


def test_threads_context_sets_and_restores():
    assert parallel.num_threads() == 1 and not parallel.blas_single_threaded()
    blas = parallel.blas_control()
    before = blas.get() if blas else None
    with parallel.threads(2) as n:
        assert n in (1, 2) and parallel.num_threads() == n
        if blas is not None:
            assert n == 2 and blas.get() == 1 and parallel.blas_single_threaded()
        with parallel.threads() as inner:      # None inside a block: the count in effect there
            assert inner == n
        with parallel.threads(1) as one:
            assert one == 1 and parallel.num_threads() == 1
        assert parallel.num_threads() == n
    assert parallel.num_threads() == 1 and not parallel.blas_single_threaded()
    if blas is not None:
        assert blas.get() == before


@pytest.mark.parametrize("bad, err", [(0, InputError), (-2, InputError), (1000, InputError),
                                      ("2", InputTypeError), (2.0, InputTypeError)])
def test_threads_rejects_bad_counts(bad, err):
    with pytest.raises(err, match="threads"):
        with parallel.threads(bad):
            pass
    assert parallel.num_threads() == 1


def test_run_uses_the_threads_keeps_order_and_raises():
    if parallel.blas_control() is None:
        pytest.skip("NumPy's BLAS threads cannot be set here: threads() stays serial")
    seen = []
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=10)

    def work(a, b):
        barrier.wait()  # both items must be running at the same time, or this times out
        with lock:
            seen.append(threading.get_ident())
        return a * 10 + b

    with parallel.threads(2):
        assert parallel.run(work, [(1, 2), (3, 4)]) == [12, 34]
        assert len(set(seen)) == 2

        def boom(a, b):
            if a == 1:
                raise ValueError("item 1 failed")
            return a

        with pytest.raises(ValueError, match="item 1 failed"):
            parallel.run(boom, [(0, 0), (1, 0), (2, 0)])
    assert parallel.run(lambda a, b: a + b, [(1, 2), (3, 4)]) == [3, 7]  # serial outside


CONV_CASES = [((3, 4, 9, 7), (5, 4, 3, 3), 1, 1), ((2, 3, 8, 8), (4, 3, 3, 3), 2, 1),
              ((2, 6, 7, 5), (3, 6, 1, 1), 2, 0), ((3, 2, 6, 6), (4, 2, 3, 3), 1, 0),
              ((2, 4, 9, 9), (3, 4, 5, 5), 1, 2), ((2, 6, 9, 8), (4, 6, 3, 3), 2, 1),
              ((2, 5, 10, 9), (3, 5, 5, 5), 3, 2)]  # strides 2 and 3: col2im over image chunks


@pytest.mark.parametrize("xs, ws, stride, padding", CONV_CASES)
def test_conv_threaded_equals_serial(small_chunks, xs, ws, stride, padding):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    out1, c1 = conv2d_forward(x, w, b, stride=stride, padding=padding)
    dout = rng.standard_normal(out1.shape)
    dx1, g1 = conv2d_backward(dout, c1)
    with parallel.threads(3):
        out3, c3 = conv2d_forward(x, w, b, stride=stride, padding=padding)
        dx3, g3 = conv2d_backward(dout, c3)
    np.testing.assert_allclose(out1, conv2d_forward_loop(x, w, b, stride=stride, padding=padding), rtol=1e-12,
                               atol=1e-12)
    assert np.array_equal(out1, out3) and np.array_equal(dx1, dx3)  # the same products, split differently
    np.testing.assert_allclose(g3["weight"], g1["weight"], rtol=1e-13, atol=1e-13)  # sums in another order
    assert np.array_equal(g1["bias"], g3["bias"])


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_threaded_equals_serial(train):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 5, 3, 6)) * 3 + 1
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    rm, rv = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    dout = rng.standard_normal(x.shape)
    out1, c1, s1 = batchnorm2d_forward(x, gamma, beta, rm, rv, train=train)
    dx1, g1 = batchnorm2d_backward(dout, c1)
    with parallel.threads(3):
        out3, c3, s3 = batchnorm2d_forward(x, gamma, beta, rm, rv, train=train)
        dx3, g3 = batchnorm2d_backward(dout.copy(), c3, overwrite_dout=True)
    for a, b in ((out1, out3), (s1.mean, s3.mean), (s1.var, s3.var), (dx1, dx3), (g1["weight"], g3["weight"]),
                 (g1["bias"], g3["bias"])):
        assert np.array_equal(a, b)


def test_model_step_threaded_equals_serial(small_chunks):
    cfg = ResNetConfig(depth=8, width=4, attention="eca")
    rng = np.random.default_rng(5)
    params, buffers = init_resnet(cfg, rng, dtype=np.float64)
    x = rng.standard_normal((6, 3, 12, 12))
    y = rng.integers(0, 10, 6)

    def step():
        logits, cache, new_buffers = resnet_forward(x, params, buffers, cfg, train=True)
        _, dlogits = softmax_cross_entropy(logits, y)
        return logits, new_buffers, resnet_backward(dlogits, cache)

    logits1, buf1, grads1 = step()
    with parallel.threads(2):
        logits2, buf2, grads2 = step()
    assert np.array_equal(logits1, logits2)
    assert all(np.array_equal(buf1[k], buf2[k]) for k in buf1)
    for k in grads1:
        np.testing.assert_allclose(grads2[k], grads1[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_errstate_reaches_the_threads():
    if parallel.blas_control() is None:
        pytest.skip("NumPy's BLAS threads cannot be set here: threads() stays serial")
    big = np.ones((4, 3))
    big[2:] = 1e300

    def part(a, b):
        return big[a:b] * 1e300  # overflows in rows 2, 3 only: the item the worker thread runs

    with parallel.threads(2), np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            parallel.run(part, [(0, 2), (2, 4)])
    with parallel.threads(2), np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(np.vstack(parallel.run(part, [(0, 2), (2, 4)]))[2:]).all()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_attention_threaded_equals_serial(name):
    v = VARIANTS[name]
    rng = np.random.default_rng(6)
    C = 32  # SE's default r = 16 and SE-GC's 16 groups need C >= 16
    x = rng.standard_normal((3, C, 5, 4))
    dout = rng.standard_normal(x.shape)
    params = v.init_params(C, rng=rng, dtype=np.float64)
    out1, c1 = v.forward(x, params)
    dx1, g1 = v.backward(dout, c1)
    with parallel.threads(3):
        out3, c3 = v.forward(x, params)
        dx3, g3 = v.backward(dout, c3)
    assert np.array_equal(out1, out3) and np.array_equal(dx1, dx3)
    assert set(g1) == set(g3) and all(np.array_equal(g1[k], g3[k]) for k in g1)


# ------------------------------------------------------------------ data parallel: shards of a batch

def test_allreduce_sums_in_shard_order_and_aborts():
    reducer = parallel.AllReduce(3)

    def shard(i, reduce):
        first = reduce(np.array([1.0, 2.0]) * (i + 1))
        second = reduce(np.array([10.0 ** i]))
        return first, second

    results = parallel.run_shards(shard, 3, reducer=reducer)
    for first, second in results:
        assert np.array_equal(first, [6.0, 12.0]) and np.array_equal(second, [111.0])
    with pytest.raises(InputError, match="reducer must be an AllReduce of 2 shards"):
        parallel.run_shards(shard, 2, reducer=reducer)
    with pytest.raises(InputError, match="n must be"):
        parallel.AllReduce(0)


def test_allreduce_gathers_every_shards_vector_in_shard_order():
    def shard(i, reduce):
        every = reduce.gather(np.array([i, 10.0 * i]))
        total = reduce(np.array([1.0 * i]))  # the slot sets alternate across both kinds of call
        again = reduce.gather(np.array([-1.0 * i, 0.0]))
        return every, total, again

    for every, total, again in parallel.run_shards(shard, 3):
        assert np.array_equal(every, [[0, 0], [1, 10], [2, 20]])
        assert np.array_equal(total, [3.0])
        assert np.array_equal(again, [[0, 0], [-1, 0], [-2, 0]])
    alone = parallel.AllReduce(1).for_shard(0)
    assert np.array_equal(alone.gather(np.array([4.0, 5.0])), [[4.0, 5.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_one_exchange_equals_two_reductions_bit_for_bit(dtype):
    # the forward pass gathers (sum, M2, count) once where it can; a reduce function without
    # gather takes the two-reduction path: the same numbers, bit for bit
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((13, 6, 5, 5)) * 3 + 40).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 6).astype(dtype), rng.standard_normal(6).astype(dtype)
    rm, rv = np.zeros(6, dtype), np.ones(6, dtype)
    bounds = parallel.split(13, 3)

    def run(plain):
        def shard(i, reduce):
            a, b = bounds[i]
            fn = (lambda v: reduce(v)) if plain else reduce
            assert hasattr(fn, "gather") != plain
            out, cache, stats = batchnorm2d_forward(x[a:b], gamma, beta, rm, rv, train=True, allreduce=fn)
            return out, stats.mean, stats.var, cache.shift
        return parallel.run_shards(shard, 3)

    for once, twice in zip(run(False), run(True)):
        assert all(np.array_equal(u, v) for u, v in zip(once, twice))


def test_a_failing_shard_stops_the_others_and_its_error_propagates():
    def shard(i, reduce):
        if i == 1:
            raise ValueError("shard 1 failed")
        return reduce(np.ones(2))  # would wait for shard 1 forever without the abort

    done = []
    worker = threading.Thread(target=lambda: done.append(pytest.raises(ValueError, parallel.run_shards, shard, 2)))
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "run_shards hung on a failed shard"
    assert "shard 1 failed" in str(done[0].value)


def test_shard_count():
    assert parallel.shard_count(128, 8) == 1  # outside threads()
    if parallel.blas_control() is None:
        pytest.skip("NumPy's BLAS threads cannot be set here: threads() stays serial")
    with parallel.threads(2):
        assert parallel.shard_count(128, 8) == 2
        assert parallel.shard_count(15, 8) == 1
        assert parallel.run_shards(lambda i, reduce: parallel.shard_count(128, 8), 2) == [1, 1]  # no nesting


@pytest.mark.parametrize("shards, scale, offset", [(2, 2.0, 3.0), (3, 2.0, 3.0), (2, 1e-3, 50.0)])
def test_batchnorm_over_shards_equals_whole_batch(shards, scale, offset):
    rng = np.random.default_rng(7)
    # the last case: a mean 50,000 standard deviations away from 0 (the combination must not cancel)
    x = rng.standard_normal((7, 5, 3, 4)) * scale + offset + np.arange(7)[:, None, None, None] * scale
    dout = rng.standard_normal(x.shape)
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    rm, rv = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    out1, c1, s1 = batchnorm2d_forward(x, gamma, beta, rm, rv, train=True)
    dx1, g1 = batchnorm2d_backward(dout, c1)
    bounds = parallel.split(7, shards)

    def shard(i, reduce):
        a, b = bounds[i]
        out, cache, stats = batchnorm2d_forward(x[a:b], gamma, beta, rm, rv, train=True, allreduce=reduce)
        dx, g = batchnorm2d_backward(dout[a:b], cache)
        return out, stats, dx, g

    parts = parallel.run_shards(shard, shards)
    # float64 rounding of x (its ulp near the offset) is amplified by 1 / std in the normalised values
    tol = 1e-12 * max(1.0, offset / scale)
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), out1, rtol=1e-12, atol=tol)
    np.testing.assert_allclose(np.concatenate([p[2] for p in parts]), dx1, rtol=1e-11, atol=tol)
    for p in parts:  # every shard has the whole batch's running statistics (unbiased: M = 7 * 12)
        np.testing.assert_allclose(p[1].mean, s1.mean, rtol=1e-13)
        np.testing.assert_allclose(p[1].var, s1.var, rtol=1e-13)
    for k in ("weight", "bias"):  # each shard's share; their sum is the batch's gradient
        np.testing.assert_allclose(sum(p[3][k] for p in parts), g1[k], rtol=1e-12, atol=tol)
        assert not np.allclose(parts[0][3][k], g1[k])


def _model_step(cfg, params, buffers, x, y):
    logits, cache, new_buffers = resnet_forward(x, params, buffers, cfg, train=True)
    _, dlogits = softmax_cross_entropy(logits, y)
    return logits, new_buffers, resnet_backward(dlogits, cache), cache


@pytest.mark.parametrize("attention", ["eca", "se", "none"])
def test_model_over_shards_equals_serial(attention):
    if parallel.blas_control() is None:
        pytest.skip("NumPy's BLAS threads cannot be set here: threads() stays serial")
    from eca_ref.models import attention_gates
    from eca_ref.models.resnet import ShardedCache
    cfg = ResNetConfig(depth=8, width=4, attention=attention)
    rng = np.random.default_rng(8)
    params, buffers = init_resnet(cfg, rng, dtype=np.float64)
    x = rng.standard_normal((20, 3, 8, 8))  # 20 images: shards of 10, 7/7/6 (MIN_SHARD = 8 -> 2 shards)
    y = rng.integers(0, 10, 20)
    logits1, buf1, grads1, _ = _model_step(cfg, params, buffers, x, y)
    eval1 = resnet_forward(x, params, buffers, cfg, train=False)[0]
    gates1 = attention_gates(x, params, buffers, cfg)
    for n in (2, 3):
        with parallel.threads(n):
            logits2, buf2, grads2, cache = _model_step(cfg, params, buffers, x, y)
            again = _model_step(cfg, params, buffers, x, y)
            eval2 = resnet_forward(x, params, buffers, cfg, train=False)[0]
            gates2 = attention_gates(x, params, buffers, cfg)
        assert isinstance(cache, ShardedCache) and len(cache.caches) == 2
        np.testing.assert_allclose(logits2, logits1, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(eval2, eval1, rtol=1e-11, atol=1e-12)
        for k in buf1:
            np.testing.assert_allclose(buf2[k], buf1[k], rtol=1e-11, atol=1e-14, err_msg=k)
        for k in grads1:
            np.testing.assert_allclose(grads2[k], grads1[k], rtol=1e-9, atol=1e-12, err_msg=k)
        assert set(gates2) == set(gates1)
        for k in gates1:
            np.testing.assert_allclose(gates2[k], gates1[k], rtol=1e-12, err_msg=k)
        # deterministic: the same shards give the same bits
        assert np.array_equal(again[0], logits2)
        assert all(np.array_equal(again[2][k], grads2[k]) for k in grads2)


def test_model_backward_refuses_a_foreign_cache():
    with pytest.raises(InputTypeError, match="cache must be the cache resnet_forward returned"):
        resnet_backward(np.zeros((2, 10)), {"not": "a cache"})
