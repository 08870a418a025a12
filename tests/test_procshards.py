"""The model's shards in worker processes (eca_ref.procshards): the same numbers as the threads,
bit for bit, and clear failures when a worker fails, dies or is gone."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from eca_ref import parallel, procshards
from eca_ref.errors import InputError
from eca_ref.models import ResNetConfig, init_resnet, resnet_backward, resnet_forward


def _net(dtype, depth=8, width=4, attention="eca", batch=37, size=12, seed=0):
    cfg = ResNetConfig(depth=depth, width=width, attention=attention)
    rng = np.random.default_rng(seed)
    params, buffers = init_resnet(cfg, rng, dtype=dtype)
    x = rng.standard_normal((batch, 3, size, size)).astype(dtype)
    dl = rng.standard_normal((batch, 10)).astype(dtype)
    return cfg, params, buffers, x, dl


def _passes(cfg, params, buffers, x, dl):
    logits, cache, new_buffers = resnet_forward(x, params, buffers, cfg, train=True)
    grads = resnet_backward(dl, cache)
    eval_logits, _, _ = resnet_forward(x, params, buffers, cfg, train=False)
    return logits, grads, new_buffers, eval_logits


def _threaded(net, n=2):
    """The passes with the shards in n threads (no worker processes, even inside a processes block)."""
    with procshards.use_cores(n, "threads"):
        assert procshards.active_pool() is None
        return _passes(*net)


def _assert_identical(a, b):
    la, ga, ba, ea = a
    lb, gb, bb, eb = b
    assert np.array_equal(la, lb)
    assert np.array_equal(ea, eb)
    assert ga.keys() == gb.keys() and all(np.array_equal(ga[k], gb[k]) for k in ga)
    assert ba.keys() == bb.keys() and all(np.array_equal(ba[k], bb[k]) for k in ba)


@pytest.fixture(scope="module")
def _workers():
    pool = procshards.ShardProcesses(2)
    yield pool
    pool.close()


@pytest.fixture
def pool2(_workers):
    """Inside a processes(2) block whose workers the module's tests share (started once)."""
    with parallel.threads(1):
        procshards._active.pool = _workers
        try:
            yield _workers
        finally:
            procshards._active.pool = None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("attention", ["eca", "se", "none"])
def test_processes_give_the_threads_numbers_bit_for_bit(pool2, dtype, attention):
    # 37 images: shards of 19 and 18; train-mode BN reduces over the processes
    net = _net(dtype, attention=attention)
    got = _passes(*net)
    assert procshards.active_pool() is pool2
    _assert_identical(got, _threaded(net))
    assert procshards.active_pool() is pool2
    # and the processes' result is the serial one up to the order of the sums over the batch
    with procshards.processes(1):
        serial = _passes(*net)
    if dtype == np.float64:
        assert np.allclose(got[0], serial[0], rtol=1e-10, atol=1e-12)
        assert all(np.allclose(got[1][k], serial[1][k], rtol=1e-8, atol=1e-10) for k in got[1])


@pytest.mark.parametrize("batch", [16, 8])
def test_32x32_images_many_im2col_chunks_and_a_batch_too_small_to_shard(pool2, batch):
    # 32x32 maps: a convolution's weight gradient sums many chunks of columns (in one piece in a
    # shard, whatever the thread count); 8 images: too few for two shards, one piece everywhere
    net = _net(np.float32, width=2, batch=batch, size=32, seed=5)
    got = _passes(*net)
    _assert_identical(got, _threaded(net))
    with parallel.threads(2):  # an enclosing threads block does not change this process's shard
        _assert_identical(got, _passes(*net))


def test_three_processes_and_a_depth_14_net():
    net = _net(np.float64, depth=14, width=3, batch=29, size=8, seed=3)
    with procshards.processes(3):
        got = _passes(*net)
    _assert_identical(got, _threaded(net, 3))


def test_a_batch_too_small_for_the_shards_runs_in_this_process(pool2):
    cfg, params, buffers, x, dl = _net(np.float64, batch=9)  # < 2 shards of 8 images
    logits, cache, _ = resnet_forward(x, params, buffers, cfg, train=True)
    assert not isinstance(cache, procshards.ProcCache)
    with procshards.processes(1):
        serial = resnet_forward(x, params, buffers, cfg, train=True)[0]
    assert np.array_equal(logits, serial)


def test_backward_needs_the_latest_forward(pool2):
    cfg, params, buffers, x, dl = _net(np.float64)
    _, old, _ = resnet_forward(x, params, buffers, cfg, train=True)
    _, new, _ = resnet_forward(x, params, buffers, cfg, train=True)
    with pytest.raises(InputError, match="latest forward pass"):
        resnet_backward(dl, old)
    grads = resnet_backward(dl, new)  # the pool is still usable
    assert np.isfinite(grads["fc.weight"]).all()


def test_a_worker_error_reaches_the_caller_and_the_pool_goes_on(pool2):
    pool2.conns[0].send(("no such message",))
    pool2._pending.add(1)
    with pytest.raises(InputError, match="unknown message"):
        pool2._collect()
    assert not pool2._pending
    net = _net(np.float32)
    _assert_identical(_passes(*net), _threaded(net))


def test_the_process_reducer_sums_and_gathers_like_the_threads(pool2):
    slots = procshards._view(pool2.red.ensure(2 * 2 * 8 * 8), np.float64, (2, 2, 8))
    reduce = procshards._Reducer(pool2.rdv, slots, 0, pool2._alive)
    other = procshards._Reducer(pool2.rdv, slots, 1, pool2._alive)  # shard 1, played by a thread here
    pool2.rdv.reset()
    got = {}
    t = threading.Thread(target=lambda: got.update(w=(other(np.array([5.0, 6.0])), other.gather(np.array([7.0])))))
    t.start()
    mine = (reduce(np.array([1.0, 2.0])), reduce.gather(np.array([3.0])))
    t.join(10)
    for total, every in (mine, got["w"]):
        assert np.array_equal(total, [6.0, 8.0]) and np.array_equal(every, [[3.0], [7.0]])
    with pytest.raises(InputError, match="at most 8 values"):
        reduce(np.ones(9))


def test_a_worker_failing_mid_pass_raises_its_own_error_here(pool2):
    # the worker fails (a message it cannot read) while this process waits for it at a reduction
    slots = procshards._view(pool2.red.ensure(2 * 2 * 8 * 8), np.float64, (2, 2, 8))
    reduce = procshards._Reducer(pool2.rdv, slots, 0, pool2._alive)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="unknown message"):
        pool2._run(lambda: reduce(np.ones(3)), lambda i: pool2.conns[i - 1].send(("no such message",)))
    assert time.perf_counter() - t0 < 10
    net = _net(np.float64)
    _assert_identical(_passes(*net), _threaded(net))


def test_an_interrupted_collection_is_drained_by_the_next_pass(pool2, monkeypatch):
    net = _net(np.float64)
    real = procshards.ShardProcesses._collect
    hits = []

    def interrupted(self):  # Ctrl-C while this process waits for the worker's reply
        if not hits:
            hits.append(1)
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(procshards.ShardProcesses, "_collect", interrupted)
    cfg, params, buffers, x, dl = net
    with pytest.raises(KeyboardInterrupt):
        resnet_forward(x, params, buffers, cfg, train=True)
    assert pool2._pending == {1}
    _assert_identical(_passes(*net), _threaded(net))
    assert pool2._pending == set()


def test_an_error_in_this_process_releases_the_workers(pool2, monkeypatch):
    from eca_ref.models import resnet

    cfg, params, buffers, x, dl = _net(np.float64)
    real = resnet._forward
    calls = []

    def failing(x, *a, **k):  # shard 0 fails before its first batch-norm reduction
        calls.append(1)
        raise RuntimeError("shard 0 failed")

    monkeypatch.setattr(resnet, "_forward", failing)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="shard 0 failed"):
        resnet_forward(x, params, buffers, cfg, train=True)
    assert time.perf_counter() - t0 < 10  # the worker, waiting at a reduction, was released
    monkeypatch.setattr(resnet, "_forward", real)
    logits, cache, _ = resnet_forward(x, params, buffers, cfg, train=True)
    with procshards.use_cores(2, "threads"):
        want = resnet_forward(x, params, buffers, cfg, train=True)[0]
    assert np.array_equal(logits, want) and calls == [1]


def test_a_dead_worker_is_reported_and_its_files_removed():
    cfg, params, buffers, x, dl = _net(np.float64)
    with procshards.processes(2):
        pool = procshards.active_pool()
        resnet_forward(x, params, buffers, cfg, train=True)
        paths = [f.path for files in pool.files for f in files.values() if f.path] + [pool.red.path]
        assert paths and all(os.path.exists(p) for p in paths)
        os.kill(pool.procs[0].pid, signal.SIGKILL)
        pool.procs[0].join(5)
        with pytest.raises(procshards.WorkerError, match="died"):
            resnet_forward(x, params, buffers, cfg, train=True)
    assert not any(os.path.exists(p) for p in paths)


def test_files_of_a_killed_process_are_removed_by_the_next_pool(tmp_path):
    # a process killed before it could clean up leaves its shared files behind
    script = "from eca_ref import procshards; import os, time\n" \
             "p = procshards.ShardProcesses(2); p.files[1]['in'].ensure(1000); print(p.files[1]['in'].path, flush=True)\n" \
             "os.kill(os.getpid(), 9)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    left = out.stdout.strip()
    assert left and os.path.exists(left)
    with procshards.processes(2):
        assert not os.path.exists(left)


def test_the_workers_stop_with_the_block():
    cfg, params, buffers, x, dl = _net(np.float64)
    with procshards.processes(2):
        pool = procshards.active_pool()
        _, cache, _ = resnet_forward(x, params, buffers, cfg, train=True)
    assert procshards.active_pool() is None
    assert not any(p.is_alive() for p in pool.procs)
    with pytest.raises(procshards.WorkerError, match="stopped"):
        resnet_backward(dl, cache)
    assert not [f for files in pool.files for f in files.values() if f.path] and pool.red.path is None


def test_nested_blocks_reuse_the_workers(pool2):
    with procshards.processes() as n, procshards.use_cores(None, "processes") as m:
        assert n == m == 2 and procshards.active_pool() is pool2
    with procshards.processes(1) as n:
        assert n == 1 and procshards.active_pool() is None
    assert procshards.active_pool() is pool2


@pytest.mark.parametrize("call, match", [
    (lambda: procshards.processes(0).__enter__(), "processes must be"),
    (lambda: procshards.processes(1000).__enter__(), "at most 256"),
    (lambda: procshards.use_cores(2, "fibres").__enter__(), "workers must be one of processes, threads"),
    (lambda: procshards.use_cores(0, "threads").__enter__(), "threads must be"),
])
def test_bad_arguments(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_a_script_without_a_main_guard_can_start_workers(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from eca_ref import procshards
        from eca_ref.models import ResNetConfig, init_resnet, resnet_forward
        cfg = ResNetConfig(depth=8, width=4)
        params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
        x = np.random.default_rng(1).standard_normal((16, 3, 8, 8))
        print("started")
        with procshards.processes(2) as n:
            logits, cache, _ = resnet_forward(x, params, buffers, cfg, train=True)
        print(n, type(cache).__name__, logits.shape)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["started", "2 ProcCache (16, 10)"]
