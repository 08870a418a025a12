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
              ((2, 4, 9, 9), (3, 4, 5, 5), 1, 2)]


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
