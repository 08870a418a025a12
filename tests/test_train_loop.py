"""The training loop: determinism, exact resume (epoch end and mid-epoch), divergence, refusals."""
import json
import signal

import numpy as np
import pytest

from eca_ref.errors import CheckpointError, InputError, InputTypeError
from eca_ref.train.checkpoint import load_checkpoint
from eca_ref.train.loop import TrainConfig, resume, train

TINY = dict(depth=8, width=2, epochs=2, batch_size=16, seed=0)




@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """The reference: 2 epochs in one go."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    r = train(TrainConfig(**TINY), out, data_dir=data_dir)
    assert r.status == "finished" and r.epoch == 2 and r.step == 6
    return r


def _assert_same_state(a, b):
    for name in ("params", "buffers", "momentum"):
        ga, gb = getattr(a, name), getattr(b, name)
        assert set(ga) == set(gb)
        for k in ga:
            assert ga[k].dtype == gb[k].dtype
            assert np.array_equal(ga[k], gb[k]), f"{name}[{k}] differs"


def _strip_time(metrics):
    return [{k: v for k, v in m.items() if k not in ("seconds", "train_seconds", "images_per_s")} for m in metrics]


def test_run_dir_contents(straight):
    d = straight.run_dir
    assert {"config.json", "metrics.jsonl", "checkpoint.json"} <= {p.name for p in d.iterdir()}
    lines = [json.loads(s) for s in (d / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert {"train_loss", "train_acc", "test_acc", "test_loss", "seconds", "lr"} <= set(lines[0])
    assert json.loads((d / "config.json").read_text())["train"]["width"] == 2
    groups, meta = load_checkpoint(d)
    assert meta["epoch"] == 2 and meta["step"] == 6 and meta["status"] == "finished"
    assert all(a.dtype == np.float32 for a in groups["params"].values())
    assert meta["optimizer"]["nesterov"] and meta["optimizer"]["momentum"] == 0.9


def test_same_seed_same_weights(data_dir, tmp_path, straight):
    r = train(TrainConfig(**TINY), tmp_path / "again", data_dir=data_dir)
    _assert_same_state(r, straight)
    other = train(TrainConfig(**{**TINY, "seed": 1, "epochs": 1}), tmp_path / "seed1", data_dir=data_dir)
    assert not np.array_equal(other.params["fc.weight"], straight.params["fc.weight"])


def test_resume_after_stop_is_bit_identical(data_dir, tmp_path, straight):
    r1 = train(TrainConfig(**TINY), tmp_path / "r", data_dir=data_dir, stop_after=1)
    assert r1.status == "stopped" and r1.epoch == 1 and r1.step == 3
    r2 = resume(tmp_path / "r", data_dir=data_dir)
    assert r2.status == "finished" and r2.epoch == 2 and r2.step == 6
    _assert_same_state(r2, straight)
    assert _strip_time(r2.metrics) == _strip_time(straight.metrics)
    # and what is on disk is the same too
    g2, _ = load_checkpoint(tmp_path / "r")
    g1, _ = load_checkpoint(straight.run_dir)
    for grp in g1:
        for k in g1[grp]:
            assert np.array_equal(g1[grp][k], g2[grp][k])
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 2


def test_worker_processes_and_threads_train_the_same_weights(data_dir, tmp_path):
    cfg = TrainConfig(**{**TINY, "epochs": 1})
    a = train(cfg, tmp_path / "p", data_dir=data_dir, threads=2, workers="processes")
    b = train(cfg, tmp_path / "t", data_dir=data_dir, threads=2, workers="threads")
    _assert_same_state(a, b)
    assert a.metrics[0]["workers"] == "processes" and b.metrics[0]["workers"] == "threads"
    assert a.metrics[0]["threads"] == 2
    with pytest.raises(InputError, match="workers must be one of processes, threads"):
        train(cfg, tmp_path / "x", data_dir=data_dir, workers="fibres")


class _CtrlC:
    """Reporter that presses Ctrl-C (a real SIGINT) after a given batch."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch(self, epoch, batch, n_batches, loss, acc, ips, lr):
        if (epoch, batch) == self.at:
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_mid_epoch_then_resume_is_bit_identical(data_dir, tmp_path, straight):
    r1 = train(TrainConfig(**TINY), tmp_path / "c", data_dir=data_dir, reporter=_CtrlC(2, 1))
    assert r1.status == "interrupted" and r1.step == 4
    _, meta = load_checkpoint(tmp_path / "c")
    assert meta["status"] == "interrupted" and meta["epoch"] == 1 and meta["batch_in_epoch"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # handler restored
    r2 = resume(tmp_path / "c", data_dir=data_dir)
    assert r2.status == "finished"
    _assert_same_state(r2, straight)
    assert _strip_time(r2.metrics) == _strip_time(straight.metrics)


def test_second_ctrl_c_stops_at_once(data_dir, tmp_path):
    class Twice:
        def on_batch(self, epoch, batch, *a):
            if batch == 1:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**TINY), tmp_path / "k", data_dir=data_dir, reporter=Twice())
    _, meta = load_checkpoint(tmp_path / "k")      # the initial checkpoint is still there and valid
    assert meta["step"] == 0


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    from eca_ref.functional import loss as loss_mod
    real = loss_mod.softmax_cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y, **kw):
        calls["n"] += 1
        loss, d = real(logits, y, **kw)
        return (float("nan") if calls["n"] == 5 else loss), d

    ref = train(TrainConfig(**TINY), tmp_path / "ref", data_dir=data_dir, stop_after=1)
    monkeypatch.setattr(loss_mod, "softmax_cross_entropy", poisoned)
    r = train(TrainConfig(**TINY), tmp_path / "nan", data_dir=data_dir)
    assert r.status == "diverged" and "nan" in r.message and "epoch 1" in r.message
    groups, meta = load_checkpoint(tmp_path / "nan")
    assert meta["epoch"] == 1 and meta["step"] == 3
    for k, v in ref.params.items():
        assert np.array_equal(groups["params"][k], v)


def test_resume_refuses_contradicting_options(data_dir, straight):
    with pytest.raises(CheckpointError, match=r"lr=0.5 \(saved: 0.2\)"):
        resume(straight.run_dir, data_dir=data_dir, expect={"lr": 0.5, "width": 2})
    r = resume(straight.run_dir, data_dir=data_dir, expect={"width": 2})       # agreeing is fine
    assert r.status == "finished" and "already complete" in r.message


def test_resume_refuses_other_data(straight, tmp_path):
    from eca_ref.data import make_fake_cifar10
    make_fake_cifar10(tmp_path, n_train=40, n_test=20, seed=5, formats=("binary",))
    with pytest.raises(CheckpointError, match="not the data this run"):
        resume(straight.run_dir, data_dir=tmp_path)


def test_new_run_refuses_existing_run(data_dir, straight):
    with pytest.raises(InputError, match="already holds a run"):
        train(TrainConfig(**TINY), straight.run_dir, data_dir=data_dir)


def test_unwritable_out(data_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create output directory"):
        train(TrainConfig(**TINY), tmp_path / "file" / "run", data_dir=data_dir)


def test_config_validation():
    with pytest.raises(InputError):
        TrainConfig(epochs=0)
    with pytest.raises(InputError):
        TrainConfig(lr=float("nan"))
    with pytest.raises(InputError):
        TrainConfig(depth=9)
    with pytest.raises(InputError):
        TrainConfig(attention="nope")
    with pytest.raises(CheckpointError, match="unknown fields"):
        TrainConfig.from_dict({"epochs": 1, "colour": "red"})
    with pytest.raises(InputError, match="zero_init_residual must be true or false"):
        TrainConfig(zero_init_residual="yes")
    with pytest.raises(InputError, match="init must be one of kaiming, pytorch, got 'he'"):
        TrainConfig(init="he")
    # a config saved before zero_init_residual and init existed reads as the old behaviour
    old = {k: v for k, v in TrainConfig(epochs=3).to_dict().items() if k not in ("zero_init_residual", "init")}
    assert TrainConfig.from_dict(old) == TrainConfig(epochs=3)


def test_zero_init_residual_run(data_dir, tmp_path, straight):
    r = train(TrainConfig(**TINY, zero_init_residual=True), tmp_path / "zi", data_dir=data_dir, stop_after=1)
    groups, _ = load_checkpoint(tmp_path / "zi")
    saved = json.loads((tmp_path / "zi" / "config.json").read_text())["train"]
    assert saved["zero_init_residual"] is True and r.epoch == 1
    r = resume(tmp_path / "zi", data_dir=data_dir)
    assert r.status == "finished" and r.epoch == 2
    # it trained the zero gammas (they moved off 0) and is another run than the default init
    assert all(np.abs(r.params[k]).max() > 0 for k in r.params if k.endswith("bn2.weight"))
    assert not np.array_equal(r.params["fc.weight"], straight.params["fc.weight"])


def test_evaluate_and_confusion(straight, data_dir):
    from eca_ref.train.evaluate import confusion_matrix, confusion_matrix_loop, evaluate_run
    r = evaluate_run(straight.run_dir, data_dir=data_dir)
    assert r.n == 20 and r.confusion.sum() == 20 and r.confusion.shape == (10, 10)
    assert r.accuracy == pytest.approx(np.trace(r.confusion) / 20)
    assert r.accuracy == pytest.approx(straight.metrics[-1]["test_acc"])
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    assert np.array_equal(confusion_matrix(t, p, 10), confusion_matrix_loop(t, p, 10))


def test_flip_tta_is_the_mean_of_the_logits_of_image_and_mirror(straight, data_dir):
    from eca_ref.data import load_cifar10, resolve_root
    from eca_ref.train import predict
    from eca_ref.train.evaluate import evaluate_run, load_run
    run = load_run(straight.run_dir)
    images, labels = load_cifar10(resolve_root(data_dir), split="test")
    args = (run.params, run.buffers, run.model_config)
    plain = predict(*args, images, run.mean, run.std, batch_size=7)
    mirrored = predict(*args, np.ascontiguousarray(images[..., ::-1]), run.mean, run.std)
    both = predict(*args, images, run.mean, run.std, batch_size=7, tta=True)
    np.testing.assert_allclose(both, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(both, plain)
    symmetric = np.concatenate([images[..., :16], images[..., :16][..., ::-1]], axis=-1)  # mirror-symmetric
    np.testing.assert_allclose(predict(*args, symmetric, run.mean, run.std, tta=True),
                               predict(*args, symmetric, run.mean, run.std), rtol=1e-5, atol=1e-6)
    r = evaluate_run(straight.run_dir, data_dir=data_dir, tta=True)
    assert r.tta and r.accuracy == pytest.approx(float((both.argmax(axis=1) == labels).mean()))
    with pytest.raises(InputTypeError, match="tta must be True or False"):
        evaluate_run(straight.run_dir, data_dir=data_dir, tta="yes")


def test_ablate(data_dir, tmp_path):
    from eca_ref.train.ablate import ablate
    cfg = dict(depth=8, width=4, batch_size=16)
    r = ablate(["none", "eca"], [0, 1], epochs=1, out=tmp_path / "abl", data_dir=data_dir, **cfg)
    rows = {row.variant: row for row in r.rows}
    assert rows["none"].params_added == 0 and rows["eca"].params_added > 0
    assert rows["eca"].params_total == rows["none"].params_total + rows["eca"].params_added
    assert len(rows["eca"].accs) == 2 and all(0 <= a <= 1 for a in rows["eca"].accs)
    assert rows["eca"].std >= 0
    # rerun: runs are reused, same numbers
    again = ablate(["none", "eca"], [0, 1], epochs=1, out=tmp_path / "abl", data_dir=data_dir, **cfg)
    assert [row.accs for row in again.rows] == [row.accs for row in r.rows]


def test_preset_config():
    from eca_ref.errors import InputError
    from eca_ref.train import TrainConfig, preset_config

    assert preset_config("default") == TrainConfig()
    cfg = preset_config("d20", epochs=3)
    assert (cfg.depth, cfg.epochs, cfg.width, cfg.lr, cfg.warmup) == (20, 3, 16, 0.4, 0.15)
    cfg = preset_config("d14w24", seed=2)
    assert (cfg.depth, cfg.epochs, cfg.width, cfg.lr, cfg.warmup, cfg.seed) == (14, 25, 24, 0.4, 0.15, 2)
    with pytest.raises(InputError, match="preset must be one of default, d20, d14w24, got 'd50'"):
        preset_config("d50")


def test_pytorch_init_run(data_dir, tmp_path, straight):
    r = train(TrainConfig(**TINY, init="pytorch"), tmp_path / "pt", data_dir=data_dir, stop_after=1)
    saved = json.loads((tmp_path / "pt" / "config.json").read_text())["train"]
    assert saved["init"] == "pytorch" and r.epoch == 1
    r = resume(tmp_path / "pt", data_dir=data_dir)                      # resumes with the saved init
    assert r.status == "finished" and r.epoch == 2
    again = train(TrainConfig(**TINY, init="pytorch"), tmp_path / "pt2", data_dir=data_dir)
    for k in r.params:                                                  # stopped + resumed == straight
        assert np.array_equal(r.params[k], again.params[k]), k
    assert not np.array_equal(r.params["fc.weight"], straight.params["fc.weight"])


def test_test_every_skips_evaluations_not_training(data_dir, tmp_path):
    # epochs 1 and 3 of 4 are not evaluated (null in metrics.jsonl); 2 and 4 (the last) are, with the
    # numbers of a run that evaluated every epoch; and the weights are those of such a run
    every = train(TrainConfig(**{**TINY, "epochs": 4}), tmp_path / "every", data_dir=data_dir)
    r = train(TrainConfig(**{**TINY, "epochs": 4}), tmp_path / "skip", data_dir=data_dir, stop_after=1, test_every=2)
    assert r.status == "stopped" and r.metrics[-1]["test_acc"] is None and r.test_acc is None
    r = resume(tmp_path / "skip", data_dir=data_dir, test_every=3)   # from epoch 2 on: epoch 3, then the last
    assert r.status == "finished"
    _assert_same_state(r, every)
    lines = [json.loads(s) for s in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert [m["test_acc"] is None for m in lines] == [True, True, False, False]
    assert [m["test_loss"] is None for m in lines] == [True, True, False, False]
    for m, ref in zip(lines[2:], every.metrics[2:]):
        assert (m["test_acc"], m["test_loss"]) == (ref["test_acc"], ref["test_loss"])
    assert r.test_acc == every.test_acc and isinstance(r.test_acc, float)
    assert _strip_time(lines) == [{**m, **({"test_acc": None, "test_loss": None} if i < 2 else {})}
                                  for i, m in enumerate(_strip_time(every.metrics))]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_test_every_is_validated(data_dir, tmp_path, straight, bad):
    with pytest.raises((InputError, InputTypeError), match="test_every"):
        train(TrainConfig(**TINY), tmp_path / "bad", data_dir=data_dir, test_every=bad)
    assert not (tmp_path / "bad").exists()
    with pytest.raises((InputError, InputTypeError), match="test_every"):
        resume(straight.run_dir, data_dir=data_dir, test_every=bad)


def test_reference_engine_trains_like_the_fast_engine(data_dir, tmp_path, straight):
    # the reference code (one core) and the fast engine (2 shards of 8 images, synchronised BN) compute the
    # same function in another order: on this tiny run they agree to float32 rounding. Tolerances: losses
    # rtol 1e-5 (about 80 float32 ulps; measured: 4e-8), weights atol 1e-5 (measured: 1.2e-7), test accuracy
    # within one image of the 20
    cfg = TrainConfig(**TINY)
    fast = train(cfg, tmp_path / "fast", data_dir=data_dir, threads=2)
    ref = train(cfg, tmp_path / "ref", data_dir=data_dir, engine="reference")
    assert ref.status == "finished" and ref.step == fast.step == 6
    assert [(m["engine"], m["threads"], m["workers"]) for m in ref.metrics] == [("reference", 1, "none")] * 2
    assert [m["engine"] for m in fast.metrics] == ["fast"] * 2 and straight.metrics[0]["engine"] == "fast"
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose([m[key] for m in ref.metrics], [m[key] for m in fast.metrics], rtol=1e-5)
    assert abs(ref.test_acc - fast.test_acc) <= 1 / 20 + 1e-12
    for k in fast.params:
        np.testing.assert_allclose(ref.params[k], fast.params[k], rtol=0, atol=1e-5, err_msg=k)
    # the engine is not part of the recipe: a run started fast may continue on the reference
    train(cfg, tmp_path / "mixed", data_dir=data_dir, threads=2, stop_after=1)
    mixed = resume(tmp_path / "mixed", data_dir=data_dir, engine="reference")
    assert mixed.status == "finished" and [m["engine"] for m in mixed.metrics] == ["fast", "reference"]
    np.testing.assert_allclose([m["train_loss"] for m in mixed.metrics], [m["train_loss"] for m in fast.metrics],
                               rtol=1e-5)
    with pytest.raises(InputError, match="engine must be one of fast, reference, got 'turbo'"):
        train(cfg, tmp_path / "bad", data_dir=data_dir, engine="turbo")
    assert not (tmp_path / "bad").exists()


def test_a_runner_given_is_used_and_must_agree(data_dir, tmp_path, straight):
    from eca_ref.engine import cores
    with cores(threads=1, engine="reference") as runner:
        r = train(TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "given", data_dir=data_dir, runner=runner)
        assert r.metrics[0]["engine"] == "reference"
        with pytest.raises(InputError, match=r"options contradict the runner given: engine='fast' \(the runner's: "
                                             r"'reference'\)"):
            train(TrainConfig(**TINY), tmp_path / "clash", data_dir=data_dir, runner=runner, engine="fast")


def test_evaluate_arrays_loss_is_the_projects_cross_entropy(straight, data_dir):
    from eca_ref.data import load_cifar10, resolve_root
    from eca_ref.train import evaluate_arrays, predict
    from eca_ref.train.evaluate import load_run
    run = load_run(straight.run_dir)
    images, labels = load_cifar10(resolve_root(data_dir), split="test")
    args = (run.params, run.buffers, run.model_config)
    ev = evaluate_arrays(*args, images, labels, run.mean, run.std)
    z = predict(*args, images, run.mean, run.std).astype(np.float64)         # the formula, written out
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert ev["loss"] == float(-logp[np.arange(len(labels)), labels].mean())
    assert ev["loss"] == straight.metrics[-1]["test_loss"]
