"""SGD with Nesterov momentum and the learning-rate schedules."""
import math

import numpy as np
import pytest

from eca_ref.errors import InputError
from eca_ref.train.optim import SGDConfig, sgd_init, sgd_step, sgd_step_loop
from eca_ref.train.schedule import Schedule


def _problem(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    params = {"conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(dtype),
              "bn.bias": rng.standard_normal(4).astype(dtype),
              "fc.weight": rng.standard_normal((2, 4)).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in range(4)]
    return params, grads


@pytest.mark.parametrize("nesterov,momentum,wd", [(True, 0.9, 5e-4), (False, 0.9, 1e-2), (False, 0.0, 0.0)])
def test_vectorised_matches_loop(nesterov, momentum, wd):
    params, grads = _problem(np.float32)
    decay = {"conv.weight", "fc.weight"}
    pa, ba = dict(params), sgd_init(params)
    pb, bb = dict(params), sgd_init(params)
    for g in grads:
        pa, ba = sgd_step(pa, g, ba, lr=0.05, decay=decay, momentum=momentum, weight_decay=wd, nesterov=nesterov and momentum > 0)
        pb, bb = sgd_step_loop(pb, g, bb, lr=0.05, decay=decay, momentum=momentum, weight_decay=wd, nesterov=nesterov and momentum > 0)
    for k in params:
        assert pa[k].dtype == np.float32 and ba[k].dtype == np.float32
        np.testing.assert_allclose(pa[k], pb[k], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ba[k], bb[k], rtol=1e-6, atol=1e-6)


def test_step_is_pure_and_first_step():
    p = {"w": np.ones(3, np.float32)}
    b = sgd_init(p)
    g = {"w": np.full(3, 2.0, np.float32)}
    p1, b1 = sgd_step(p, g, b, lr=0.1, decay={"w"}, weight_decay=0.5)
    assert np.array_equal(p["w"], np.ones(3)) and np.array_equal(b["w"], np.zeros(3)) and np.array_equal(g["w"], np.full(3, 2.0))
    # g' = 2 + 0.5 * 1 = 2.5; buf = 2.5; nesterov step = 2.5 + 0.9 * 2.5 = 4.75
    np.testing.assert_allclose(b1["w"], 2.5)
    np.testing.assert_allclose(p1["w"], 1 - 0.1 * 4.75, rtol=1e-6)


def test_weight_decay_only_on_decay_keys():
    params, grads = _problem()
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    p1, _ = sgd_step(params, zero, sgd_init(params), lr=1.0, decay={"conv.weight"}, weight_decay=0.1)
    assert np.array_equal(p1["bn.bias"], params["bn.bias"])
    assert np.array_equal(p1["fc.weight"], params["fc.weight"])
    assert not np.array_equal(p1["conv.weight"], params["conv.weight"])


def test_parity_with_torch_sgd():
    torch = pytest.importorskip("torch")
    params, grads = _problem(np.float64, seed=1)
    decay = {"conv.weight", "fc.weight"}
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD([{"params": [tp[k] for k in params if k in decay], "weight_decay": 5e-4},
                           {"params": [tp[k] for k in params if k not in decay], "weight_decay": 0.0}],
                          lr=0.1, momentum=0.9, nesterov=True)
    sched = Schedule("onecycle", peak=0.1, total_steps=len(grads))
    p, b = dict(params), sgd_init(params)
    for step, g in enumerate(grads):
        lr = sched(step)
        for group in opt.param_groups:
            group["lr"] = lr
        for k in params:
            tp[k].grad = torch.tensor(g[k])
        opt.step()
        p, b = sgd_step(p, g, b, lr=lr, decay=decay)
    for k in params:
        np.testing.assert_allclose(p[k], tp[k].detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b[k], opt.state[tp[k]]["momentum_buffer"].numpy(), rtol=1e-12, atol=1e-12)


def test_sgd_bad_input():
    p = {"w": np.ones(3)}
    with pytest.raises(InputError, match="lr"):
        sgd_step(p, p, sgd_init(p), lr=-1.0, decay=set())
    with pytest.raises(InputError, match="keys"):
        sgd_step(p, {"v": np.ones(3)}, sgd_init(p), lr=0.1, decay=set())
    with pytest.raises(InputError, match="shape"):
        sgd_step(p, {"w": np.ones(4)}, sgd_init(p), lr=0.1, decay=set())
    with pytest.raises(InputError, match="momentum"):
        SGDConfig(momentum=1.5)
    with pytest.raises(InputError, match="weight_decay"):
        SGDConfig(weight_decay=-1.0)


# ---------------------------------------------------------------- schedules

@pytest.mark.parametrize("total,warmup", [(1, 0.3), (7, 0.3), (100, 0.25), (391, 0.3), (50, 0.0)])
def test_onecycle_matches_torch(total, warmup):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total, pct_start=warmup,
                                              cycle_momentum=False)
    mine = Schedule("onecycle", peak=0.1, total_steps=total, warmup=warmup)
    for t in range(total):
        assert mine(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        if t < total - 1:
            ref.step()


def test_onecycle_shape():
    s = Schedule("onecycle", peak=0.1, total_steps=1000, warmup=0.3)
    lrs = [s(t) for t in range(1000)]
    top = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1)
    assert 295 <= top <= 300
    assert all(a <= b for a, b in zip(lrs[:top], lrs[1:top + 1]))
    assert all(a >= b for a, b in zip(lrs[top:], lrs[top + 1:]))
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4)


def test_cosine_shape():
    s = Schedule("cosine", peak=0.2, total_steps=100, warmup=0.1)
    assert s(0) == pytest.approx(0.02) and s(9) == pytest.approx(0.2)
    assert s(10) == pytest.approx(0.2)
    assert s(55) == pytest.approx(0.1)
    assert 0 < s(99) < 1e-3
    assert all(s(t) >= s(t + 1) for t in range(10, 99))
    assert Schedule("cosine", peak=0.1, total_steps=10, warmup=0.0)(0) == pytest.approx(0.1)


def test_schedule_bad_input():
    with pytest.raises(InputError, match="schedule"):
        Schedule("linear")
    with pytest.raises(InputError, match="lr"):
        Schedule(peak=math.nan)
    with pytest.raises(InputError, match="warmup"):
        Schedule(warmup=1.0)
    with pytest.raises(InputError, match="step"):
        Schedule(total_steps=3)(3)
