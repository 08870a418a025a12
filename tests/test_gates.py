"""eca-ref gates: per-class gate statistics of a trained run."""
import json

import numpy as np
import pytest

from eca_ref.errors import InputError
from eca_ref.models import attention_gates
from eca_ref.train.evaluate import load_run
from eca_ref.train.gates import gate_statistics, summarize_gates
from cli_helpers import run

TINY = ["--depth", "8", "--width", "2", "--batch-size", "16", "--epochs", "1", "--seed", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from eca_ref.data import make_fake_cifar10
    data = tmp_path_factory.mktemp("cifar")
    make_fake_cifar10(data, n_train=40, n_test=30, seed=0, formats=("binary",))
    out = tmp_path_factory.mktemp("runs") / "eca"
    r = run("train", *TINY, "--out", out, "--data-dir", data)
    assert r.exit_code == 0, r.output
    return out, data


def test_summary_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 1, 0, 2, 2])
    g = rng.uniform(size=(7, 5))
    (b,) = summarize_gates({"blk": g}, labels, ["a", "b", "c"], {"blk": {"k": 3}})
    for k in range(3):
        rows = [g[i] for i in range(7) if labels[i] == k]
        np.testing.assert_allclose(b.class_mean[k], sum(rows) / len(rows), rtol=1e-14)
    spread = [np.std([b.class_mean[k, c] for k in range(3)]) for c in range(5)]
    assert b.class_spread == pytest.approx(np.mean(spread), rel=1e-14)
    assert b.top_channel == int(np.argmax(spread))
    assert b.top_high == "abc"[int(np.argmax(b.class_mean[:, b.top_channel]))]
    assert b.mean == pytest.approx(g.mean())


def test_a_class_without_images_is_refused():
    with pytest.raises(InputError, match="none of: c"):
        summarize_gates({"blk": np.ones((2, 3))}, np.array([0, 1]), ["a", "b", "c"])


def test_statistics_of_a_trained_run(trained):
    out, data = trained
    g = gate_statistics(out, data_dir=data)
    assert g.n == 30 and g.attention == "eca"
    assert [b.name for b in g.blocks] == ["stage1.block0", "stage2.block0", "stage3.block0"]
    assert [b.channels for b in g.blocks] == [2, 4, 8]
    # independently: the model's gates on the whole test split, averaged per class
    from eca_ref.data import load_cifar10
    run_ = load_run(out)
    x, y = load_cifar10(data, split="test")
    xn = ((x / 255.0 - run_.mean[:, None, None]) / run_.std[:, None, None]).astype(np.float32)
    gates = attention_gates(xn, run_.params, run_.buffers, run_.model_config)
    for b in g.blocks:
        expect = np.stack([gates[b.name][y == k].mean(axis=0) for k in range(10)])
        np.testing.assert_allclose(b.class_mean, expect, rtol=1e-5, atol=1e-6)
        assert np.all((b.class_mean > 0) & (b.class_mean < 1))


def test_cli_table_and_json(trained):
    out, data = trained
    r = run("gates", out, "--data-dir", data)
    assert r.exit_code == 0, r.output
    assert "stage3.block0" in r.output and "class spread" in r.output
    j = json.loads(run("gates", out, "--data-dir", data, "--json").output)
    assert len(j["blocks"]) == 3 and len(j["blocks"][0]["class_mean"]) == 10


def test_cli_errors_are_one_line(tmp_path, trained):
    _, data = trained
    r = run("gates", tmp_path / "nothing", "--data-dir", data)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len([s for s in r.output.splitlines() if s.strip()]) == 1
