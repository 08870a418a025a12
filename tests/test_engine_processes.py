"""The engine's shards in worker processes (eca_ref.engine.processes): the threads' numbers bit for
bit, the reference's to rounding, for every attention variant; clear failures when a worker fails,
dies or is gone. Tolerances as in tests/test_engine.py (float64 1e-12, float32 1e-4 relative to
each array's largest entry; measured: about 6e-15 and 3e-6)."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from eca_ref.attention import VARIANTS
from eca_ref.engine import blas, cores, runner as runner_mod
from eca_ref.engine.layers import FAST_LAYERS
from eca_ref.engine.processes import ProcessPool
from eca_ref.engine.runner import ShardedCache
from eca_ref.engine.shm import Reducer, WorkerError, remove_stale_files, view
from eca_ref.errors import InputError, InputTypeError
from eca_ref.models import ResNetCache, ResNetConfig, init_resnet, resnet_backward, resnet_forward

RTOL = {np.float64: 1e-12, np.float32: 1e-4}



def _can_shard() -> bool:
    with blas.one_thread() as single:  # where BLAS keeps its own threads, cores() runs one shard
        return single


needs_shards = pytest.mark.skipif(not _can_shard(), reason="NumPy's BLAS threads cannot be set here")


def _net(dtype, depth=8, width=4, attention="eca", batch=37, size=8, seed=0):
    cfg = ResNetConfig(depth=depth, width=width, attention=attention)
    rng = np.random.default_rng(seed)
    params, buffers = init_resnet(cfg, rng, dtype=dtype)
    x = rng.standard_normal((batch, 3, size, size)).astype(dtype)
    dl = rng.standard_normal((batch, cfg.num_classes)).astype(dtype)
    return cfg, params, buffers, x, dl


def _passes(runner, cfg, params, buffers, x, dl):
    """(train logits, train grads, new buffers, eval logits, eval grads) through ``runner``."""
    logits, cache, new_buffers = runner.forward(x, params, buffers, cfg, train=True)
    grads = runner.backward(dl, cache)
    eval_logits, eval_cache, _ = runner.forward(x, params, buffers, cfg, train=False)
    return logits, grads, new_buffers, eval_logits, runner.backward(dl, eval_cache)


def _threaded(net, n=2):
    with cores(n, "threads") as threads:
        return _passes(threads, *net)


def _reference(net):
    with cores(engine="reference") as reference:
        return _passes(reference, *net)


def _assert_identical(a, b):
    for u, v in zip(a, b):
        if isinstance(u, dict):
            assert u.keys() == v.keys() and all(np.array_equal(u[k], v[k]) for k in u)
        else:
            assert np.array_equal(u, v)


def _assert_close(a, b, dtype):
    rtol = RTOL[dtype]
    for u, v in zip(a, b):
        for k in (u if isinstance(u, dict) else [None]):
            got, want = (u[k], v[k]) if k else (u, v)
            assert got.dtype == want.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=str(k))


@pytest.fixture(scope="module")
def runner():
    """A cores(2, "processes") block whose worker the module's tests share (started once)."""
    if not _can_shard():
        pytest.skip("NumPy's BLAS threads cannot be set here: cores() runs one shard")
    with cores(2, "processes") as r:
        assert (r.engine, r.n, r.workers) == ("fast", 2, "processes") and r.pool is not None
        yield r


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("attention", list(VARIANTS))
def test_processes_give_the_threads_numbers_bit_for_bit_and_the_references(runner, dtype, attention):
    # 37 images: shards of 19 and 18; train-mode BN reduces over the processes
    net = _net(dtype, attention=attention)
    got = _passes(runner, *net)
    _assert_identical(got, _threaded(net))
    _assert_close(got, _reference(net), dtype)
    cfg, params, buffers, x, _ = net
    _, cache, _ = runner.forward(x, params, buffers, cfg, train=True)
    assert isinstance(cache, ShardedCache) and cache.bounds == ((0, 19), (19, 37)) and cache.reducer is None


@pytest.mark.parametrize("batch", [16, 8])
def test_32x32_images_many_im2col_chunks_and_a_batch_too_small_to_shard(runner, batch):
    # 32x32 maps: a convolution's weight gradient sums many chunks of columns; 8 images: too few for
    # two shards, one piece everywhere
    net = _net(np.float32, width=2, batch=batch, size=32, seed=5)
    got = _passes(runner, *net)
    _assert_identical(got, _threaded(net))
    _assert_close(got, _reference(net), np.float32)


@needs_shards
def test_three_processes_and_a_depth_14_net():
    net = _net(np.float64, depth=14, width=3, batch=29, seed=3)
    small = _net(np.float64, depth=14, width=3, batch=16, seed=3)  # 2 shards of 8 < 3 processes
    with cores(3, "processes") as r:
        assert r.pool is not None and r.pool.n == 3
        got = _passes(r, *net)
        cfg, params, buffers, x, _ = small
        _, cache, _ = r.forward(x, params, buffers, cfg, train=True)
        assert isinstance(cache, ResNetCache) and cache.layers is FAST_LAYERS  # in one piece, here
    _assert_identical(got, _threaded(net, 3))
    _assert_close(got, _reference(net), np.float64)


def test_a_batch_too_small_for_the_shards_runs_in_this_process(runner):
    cfg, params, buffers, x, dl = _net(np.float64, batch=9)  # < 2 shards of 8 images
    logits, cache, _ = runner.forward(x, params, buffers, cfg, train=True)
    assert isinstance(cache, ResNetCache) and cache.layers is FAST_LAYERS
    assert np.array_equal(logits, resnet_forward(x, params, buffers, cfg, train=True, layers=FAST_LAYERS)[0])


def test_backward_needs_the_latest_forward(runner):
    cfg, params, buffers, x, dl = _net(np.float64)
    _, old, _ = runner.forward(x, params, buffers, cfg, train=True)
    _, new, _ = runner.forward(x, params, buffers, cfg, train=True)
    with pytest.raises(InputError, match="latest forward pass"):
        runner.backward(dl, old)
    assert np.isfinite(runner.backward(dl, new)["fc.weight"]).all()  # the pool is still usable
    with cores(2, "threads") as threads:  # a cache from worker processes is no threads runner's
        with pytest.raises(InputError, match="does not hold"):
            threads.backward(dl, new)
    with pytest.raises(InputError, match="takes 2 shards of inputs, got 1"):
        runner.pool.forward(runner_mod.ResNetTask(cfg, True), [{"x": x}], reduce=True)


def _bogus_message(pool):
    pool.inboxes[1].ensure(8)
    return ("bogus", pool.pass_id, None, [], pool.inboxes[1].path, None, 0)


def test_a_worker_error_reaches_the_caller_and_the_pool_goes_on(runner):
    pool = runner.pool
    pool.conns[0].send(_bogus_message(pool))
    pool._pending.add(1)
    with pytest.raises(InputError, match="unknown message 'bogus'"):
        pool._collect()
    assert not pool._pending
    net = _net(np.float32)
    _assert_identical(_passes(runner, *net), _threaded(net))


def _reducer(pool, shard):
    slots = view(pool.red.ensure(2 * 2 * 8 * 8), np.float64, (2, 2, 8))
    return Reducer(pool.rdv, slots, shard, pool._alive)


def test_the_process_reducer_sums_and_gathers_like_the_threads(runner):
    pool = runner.pool
    reduce, other = _reducer(pool, 0), _reducer(pool, 1)  # shard 1 played by a thread here
    pool.rdv.reset()
    got = {}
    t = threading.Thread(target=lambda: got.update(w=(other(np.array([5.0, 6.0])), other.gather(np.array([7.0])))))
    t.start()
    mine = (reduce(np.array([1.0, 2.0])), reduce.gather(np.array([3.0])))
    t.join(10)
    for total, every in (mine, got["w"]):
        assert np.array_equal(total, [6.0, 8.0]) and np.array_equal(every, [[3.0], [7.0]])
    with pytest.raises(InputError, match="at most 8 values"):
        reduce(np.ones(9))


def test_a_worker_failing_mid_pass_raises_its_own_error_here(runner):
    # the worker fails (a message it cannot read) while this process waits for it at a reduction
    pool = runner.pool
    reduce = _reducer(pool, 0)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="unknown message 'bogus'"):
        pool._run("bogus", None, [{}, {}], lambda: reduce(np.ones(3)))
    assert time.perf_counter() - t0 < 10
    net = _net(np.float64)
    _assert_identical(_passes(runner, *net), _threaded(net))


def test_an_interrupted_collection_is_drained_by_the_next_pass(runner, monkeypatch):
    net = _net(np.float64)
    real = ProcessPool._collect
    hits = []

    def interrupted(self):  # Ctrl-C while this process waits for the worker's reply
        if not hits:
            hits.append(1)
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(ProcessPool, "_collect", interrupted)
    cfg, params, buffers, x, dl = net
    with pytest.raises(KeyboardInterrupt):
        runner.forward(x, params, buffers, cfg, train=True)
    assert runner.pool._pending == {1}
    _assert_identical(_passes(runner, *net), _threaded(net))
    assert runner.pool._pending == set()


def test_an_error_in_this_process_releases_the_workers(runner, monkeypatch):
    cfg, params, buffers, x, dl = _net(np.float64)
    calls = []

    def failing_layers(reduce):  # shard 0 (this process) fails before its first batch-norm reduction
        def conv_forward(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("shard 0 failed")
        return FAST_LAYERS._replace(conv_forward=conv_forward)

    with monkeypatch.context() as m:
        m.setattr(runner_mod, "fast_layers", failing_layers)  # this process only: the worker's is the real one
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError, match="shard 0 failed"):
            runner.forward(x, params, buffers, cfg, train=True)
        assert time.perf_counter() - t0 < 10  # the worker, waiting at a reduction, was released
    logits, cache, _ = runner.forward(x, params, buffers, cfg, train=True)
    with cores(2, "threads") as threads:
        assert np.array_equal(logits, threads.forward(x, params, buffers, cfg, train=True)[0]) and calls == [1]


def _parent_files(pool):
    return [f.path for f in pool.inboxes if f.path] + [pool.red.path]


@needs_shards
def test_a_dead_worker_is_reported_and_its_files_removed():
    cfg, params, buffers, x, dl = _net(np.float64)
    with cores(2, "processes") as r:
        pool = r.pool
        r.forward(x, params, buffers, cfg, train=True)
        paths, worker_file = _parent_files(pool), pool.outboxes[1].path
        assert paths and all(os.path.exists(p) for p in paths + [worker_file])
        os.kill(pool.procs[0].pid, signal.SIGKILL)
        pool.procs[0].join(5)
        with pytest.raises(WorkerError, match="died"):
            r.forward(x, params, buffers, cfg, train=True)
    assert not any(os.path.exists(p) for p in paths)
    remove_stale_files()  # what the next pool does first: the killed worker's file goes too
    assert not os.path.exists(worker_file)


@needs_shards
def test_files_of_a_killed_process_are_removed_by_the_next_pool():
    # a process killed before it could clean up leaves its shared files behind
    script = ("from eca_ref.engine.processes import ProcessPool; import os\n"
              "p = ProcessPool(2); p.inboxes[1].ensure(1000); print(p.inboxes[1].path, flush=True)\n"
              "os.kill(os.getpid(), 9)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    left = out.stdout.strip()
    assert left and os.path.exists(left)
    with cores(2, "processes"):
        assert not os.path.exists(left)


@needs_shards
def test_the_workers_stop_with_the_block():
    cfg, params, buffers, x, dl = _net(np.float64)
    with cores(2, "processes") as r:
        pool = r.pool
        _, cache, _ = r.forward(x, params, buffers, cfg, train=True)
    assert pool.closed and not any(p.is_alive() for p in pool.procs)
    with pytest.raises(WorkerError, match="stopped"):
        r.backward(dl, cache)
    assert not [f for f in pool.inboxes if f.path] and pool.red.path is None


def test_cores_sets_and_restores_blas_threads():
    control = blas.blas_control()
    before, outer = (control.get() if control else None), blas.single_threaded()  # outer: in the module's block
    with cores(2, "threads") as runner:
        assert runner.engine == "fast"
        if control is not None:
            assert runner.n == 2 and control.get() == 1 and blas.single_threaded()
    assert blas.single_threaded() == outer
    if control is not None:
        assert control.get() == before
    with cores(1, "processes") as runner:  # one core: no worker processes
        assert (runner.n, runner.workers, runner.pool) == (1, "threads", None)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(threads=0), InputError, "threads must be >= 1"),
    (dict(threads=1000), InputError, "threads must be at most 256"),
    (dict(threads="2"), InputTypeError, "threads must be an integer"),
    (dict(threads=2, workers="x"), InputError, "workers must be one of processes, threads, got 'x'"),
    (dict(threads=2, engine="x"), InputError, "engine must be one of fast, reference, got 'x'"),
])
def test_cores_rejects_bad_arguments(kwargs, err, match):
    outer = blas.single_threaded()
    with pytest.raises(err, match=match):
        with cores(**kwargs):
            pass
    assert blas.single_threaded() == outer
    with pytest.raises(InputError, match="processes must be >= 2"):
        ProcessPool(1)


@needs_shards
def test_a_script_without_a_main_guard_can_start_workers(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from eca_ref.engine import cores
        from eca_ref.models import ResNetConfig, init_resnet
        cfg = ResNetConfig(depth=8, width=4)
        params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
        x = np.random.default_rng(1).standard_normal((16, 3, 8, 8))
        print("started")
        with cores(2, "processes") as runner:
            logits, cache, _ = runner.forward(x, params, buffers, cfg, train=True)
        print(runner.workers, type(cache).__name__, logits.shape)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["started", "processes ShardedCache (16, 10)"]
