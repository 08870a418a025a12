"""eca-ref train / evaluate / ablate through click's CliRunner: exit codes and messages."""
import json

import numpy as np
import pytest

from eca_ref.cli import main
from eca_ref.cli_train import COMMANDS
from eca_ref.train.checkpoint import load_checkpoint
from cli_helpers import one_error_line, run

for _c in COMMANDS:
    if _c.name not in main.commands:
        main.add_command(_c)

TINY = ["--depth", "8", "--width", "2", "--batch-size", "16", "--epochs", "2", "--seed", "0"]




@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "straight"
    r = run("train", *TINY, "--out", out, "--data-dir", data_dir)
    assert r.exit_code == 0, r.output
    return out, r


def test_train_output(straight):
    out, r = straight
    assert "epoch   1" in r.stdout and "epoch   2" in r.stdout
    assert "test loss" in r.stdout and "img/s" in r.stdout
    assert "total time" in r.stdout and "finished 2 epochs" in r.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2


def test_stop_after_then_resume_bit_identical(straight, data_dir, tmp_path):
    out = tmp_path / "r"
    r1 = run("train", *TINY, "--out", out, "--data-dir", data_dir, "--stop-after", "1")
    assert r1.exit_code == 0 and "--resume" in r1.stdout
    assert load_checkpoint(out)[1]["epoch"] == 1
    r2 = run("train", "--resume", out, "--data-dir", data_dir)
    assert r2.exit_code == 0, r2.output
    assert "resuming" in r2.stdout
    g_straight, _ = load_checkpoint(straight[0])
    g_resumed, meta = load_checkpoint(out)
    assert meta["epoch"] == 2
    for grp in ("params", "buffers", "momentum"):
        for k, v in g_straight[grp].items():
            assert np.array_equal(v, g_resumed[grp][k]), (grp, k)


def test_resume_with_agreeing_option_is_fine_and_contradiction_refused(straight, data_dir):
    r = run("train", "--resume", straight[0], "--data-dir", data_dir, "--width", "2")
    assert r.exit_code == 0 and "already complete" in r.stdout
    r = run("train", "--resume", straight[0], "--data-dir", data_dir, "--lr", "0.3", "--epochs", "5")
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "contradict" in line and "lr=0.3" in line and "epochs=5" in line
    r = run("train", "--resume", straight[0], "--data-dir", data_dir, "--zero-init-residual")
    assert r.exit_code == 2 and "zero_init_residual=True (saved: False)" in one_error_line(r)
    r = run("train", "--resume", straight[0], "--data-dir", data_dir, "--init", "pytorch")
    assert r.exit_code == 2 and "init='pytorch' (saved: 'kaiming')" in one_error_line(r)
    r = run("train", "--resume", straight[0], "--data-dir", data_dir, "--init", "he")
    assert r.exit_code == 2 and "--init" in one_error_line(r)


def test_unwritable_out_dir(data_dir, tmp_path):
    (tmp_path / "afile").write_text("x")
    r = run("train", *TINY, "--out", tmp_path / "afile" / "run", "--data-dir", data_dir)
    assert r.exit_code == 2
    assert "cannot create output directory" in one_error_line(r)


def test_data_dir_without_cifar(tmp_path):
    r = run("train", *TINY, "--out", tmp_path / "run", "--data-dir", tmp_path / "empty")
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "download" in line.lower()


def test_out_required(data_dir):
    r = run("train", *TINY, "--data-dir", data_dir)
    assert r.exit_code == 2 and "--out is required" in one_error_line(r)


def test_existing_run_refused(straight, data_dir):
    r = run("train", *TINY, "--out", straight[0], "--data-dir", data_dir)
    assert r.exit_code == 2 and "already holds a run" in one_error_line(r)


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ('{"format": "something-else", "version": 1}', "not an eca-ref checkpoint"),
])
def test_corrupt_or_foreign_checkpoint(tmp_path, data_dir, content, match):
    (tmp_path / "checkpoint.json").write_text(content)
    r = run("train", "--resume", tmp_path, "--data-dir", data_dir)
    assert r.exit_code == 2 and match in one_error_line(r)
    r = run("evaluate", tmp_path, "--data-dir", data_dir)
    assert r.exit_code == 2 and match in one_error_line(r)


def test_tampered_arrays_refused(straight, data_dir, tmp_path):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(straight[0], d)
    npz = next(d.glob("*.npz"))
    raw = bytearray(npz.read_bytes())
    raw[100] ^= 1
    npz.write_bytes(bytes(raw))
    r = run("evaluate", d, "--data-dir", data_dir)
    assert r.exit_code == 2 and "checksum mismatch" in one_error_line(r)


def test_resume_missing_run(tmp_path, data_dir):
    r = run("train", "--resume", tmp_path / "nothing", "--data-dir", data_dir)
    assert r.exit_code == 2 and "no such run directory" in one_error_line(r)


def test_divergence_exit_1_keeps_checkpoint(data_dir, tmp_path):
    out = tmp_path / "boom"
    r = run("train", *TINY, "--lr", "1e30", "--out", out, "--data-dir", data_dir)
    assert r.exit_code == 1, r.output
    assert "diverged" in r.stderr and "Traceback" not in r.output
    _, meta = load_checkpoint(out)                 # the last good one (here: the initial state)
    assert meta["step"] == 0


def test_bad_options(data_dir, tmp_path):
    r = run("train", "--attention", "nope", "--out", tmp_path / "x", "--data-dir", data_dir)
    assert r.exit_code == 2 and "nope" in one_error_line(r)
    r = run("train", "--depth", "9", "--out", tmp_path / "y", "--data-dir", data_dir)
    assert r.exit_code == 2 and "6n + 2" in one_error_line(r)
    r = run("train", "--width", "0", "--out", tmp_path / "z", "--data-dir", data_dir)
    assert r.exit_code == 2 and "width" in one_error_line(r)


def test_evaluate(straight, data_dir):
    r = run("evaluate", straight[0], "--data-dir", data_dir)
    assert r.exit_code == 0, r.output
    assert "Per-class accuracy" in r.stdout and "Confusion matrix" in r.stdout and "airplane" in r.stdout
    r = run("evaluate", straight[0], "--data-dir", data_dir, "--json")
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["n"] == 20 and sum(map(sum, d["confusion"])) == 20 and set(d["per_class"]) >= {"cat", "truck"}
    assert d["tta"] is False
    r = run("evaluate", straight[0], "--data-dir", data_dir, "--tta")
    assert r.exit_code == 0 and "mirror images (--tta)" in r.stdout
    r = run("evaluate", straight[0], "--data-dir", data_dir, "--tta", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["tta"] is True


def test_ablate(data_dir, tmp_path):
    args = ["ablate", "--attention", "none,eca", "--seeds", "0,1", "--epochs", "1", "--width", "4",
            "--batch-size", "16", "--data-dir", data_dir, "--out", tmp_path / "abl"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "mean ± std" in r.stdout and "none" in r.stdout and "eca" in r.stdout
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [row["variant"] for row in d["rows"]] == ["none", "eca"]
    # ECA on widths 4, 8, 16: k = kernel_size(C) = 1, 3, 3
    assert d["rows"][0]["params_added"] == 0 and d["rows"][1]["params_added"] == 1 + 3 + 3
    r = run("ablate", "--seeds", "a,b", "--data-dir", data_dir)
    assert r.exit_code == 2 and "--seeds" in one_error_line(r)


def test_preset_sets_its_fields_and_explicit_options_win(data_dir, tmp_path):
    out = tmp_path / "d20"
    r = run("train", "--preset", "d20", "--width", "1", "--batch-size", "20", "--epochs", "1", "--out", out,
            "--data-dir", data_dir)
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["depth"] == 20 and saved["epochs"] == 1 and saved["width"] == 1  # preset depth, explicit epochs
    assert saved["lr"] == 0.4 and saved["warmup"] == 0.15
    r = run("train", "--resume", out, "--preset", "d20", "--data-dir", data_dir)  # epochs 30 contradicts 1
    assert r.exit_code == 2 and "epochs=30 (saved: 1)" in one_error_line(r)
    r = run("train", "--resume", out, "--preset", "d20", "--epochs", "1", "--data-dir", data_dir)
    assert r.exit_code == 0 and "already complete" in r.stdout
    r = run("train", "--preset", "huge", "--out", tmp_path / "x", "--data-dir", data_dir)
    assert r.exit_code == 2 and "huge" in one_error_line(r)


def test_preset_d14w24_builds_resnet14_of_width_24(data_dir, tmp_path):
    out = tmp_path / "d14w24"
    r = run("train", "--preset", "d14w24", "--batch-size", "20", "--epochs", "1", "--out", out, "--data-dir", data_dir)
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["depth"], saved["width"], saved["lr"], saved["warmup"]) == (14, 24, 0.4, 0.15)
    # counted by hand: stem 648 + 48; stage 1 (24 ch) 2 x (2*5184 + 2*48 + 3); stage 2 (48 ch) 10368 + 20736
    # + 192 + 1152 + 96 + 3, then 2*20736 + 192 + 3; stage 3 (96 ch) 41472 + 82944 + 384 + 4608 + 192 + 3,
    # then 2*82944 + 384 + 3; classifier 970. ECA k = kernel_size(24), (48), (96) = 3 in all six blocks.
    assert "392,692 parameters, 18 in attention" in r.stdout


def test_threads_option(straight, data_dir, tmp_path):
    r = run("train", *TINY, "--threads", "1", "--out", tmp_path / "t1", "--data-dir", data_dir)
    assert r.exit_code == 0, r.output
    r = run("train", *TINY, "--threads", "0", "--out", tmp_path / "t0", "--data-dir", data_dir)
    assert r.exit_code == 2 and "threads must be >= 1" in one_error_line(r)
    r = run("evaluate", straight[0], "--threads", "-1", "--data-dir", data_dir)
    assert r.exit_code == 2 and "threads" in one_error_line(r)


def test_test_every(straight, data_dir, tmp_path):
    out = tmp_path / "te"
    r = run("train", *TINY, "--out", out, "--data-dir", data_dir, "--test-every", "5")
    assert r.exit_code == 0, r.output
    assert "epoch   1" in r.stdout and "test (not evaluated this epoch)" in r.stdout
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(s) for s in (straight[0] / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["test_acc"] is None and lines[1]["test_acc"] == ref[1]["test_acc"]  # the last: always
    assert f"test accuracy {ref[1]['test_acc']:.2%}" in r.stdout
    r = run("train", *TINY, "--out", tmp_path / "te0", "--data-dir", data_dir, "--test-every", "0")
    assert r.exit_code == 2 and "test_every must be >= 1, got 0" in one_error_line(r)
    assert not (tmp_path / "te0").exists()


def test_engine_option(straight, data_dir, tmp_path):
    out = tmp_path / "ref"
    r = run("train", *TINY, "--engine", "reference", "--out", out, "--data-dir", data_dir)
    assert r.exit_code == 0, r.output
    assert "reference engine" in r.stdout
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(s) for s in (straight[0] / "metrics.jsonl").read_text().splitlines()]
    assert [m["engine"] for m in lines] == ["reference"] * 2 and ref[0]["engine"] == "fast"
    np.testing.assert_allclose([m["train_loss"] for m in lines], [m["train_loss"] for m in ref], rtol=1e-5)
    r = run("evaluate", out, "--engine", "reference", "--data-dir", data_dir, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["accuracy"] == lines[-1]["test_acc"]
    r = run("train", *TINY, "--engine", "turbo", "--out", tmp_path / "x", "--data-dir", data_dir)
    assert r.exit_code == 2 and "--engine" in one_error_line(r)


def test_ablate_k_sweep(data_dir, tmp_path):
    args = ["ablate", "--attention", "none,eca", "--k", "1,5,adaptive", "--seeds", "0", "--epochs", "2",
            "--test-every", "2", "--width", "4", "--batch-size", "16", "--data-dir", data_dir, "--out", tmp_path / "k"]
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    # "none" has no kernel: one row; ECA once per k (3 blocks on widths 4, 8, 16; Eq. 12 gives 1, 3, 3)
    assert [(row["variant"], row["k"]) for row in d["rows"]] == [("none", None), ("eca", 1), ("eca", 5),
                                                                ("eca", "adaptive")]
    assert [row["params_added"] for row in d["rows"]] == [0, 3, 15, 7]
    assert [row["kernels"] for row in d["rows"]] == [[], [1, 1, 1], [5, 5, 5], [1, 3, 3]]
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["eca-k1-seed0", "eca-k5-seed0", "eca-seed0",
                                                                 "none-seed0"]
    r = run(*args)           # reused: the table, with each block's k for "adaptive"
    assert r.exit_code == 0, r.output
    assert "adaptive" in r.stdout and "k (each" in r.stdout and "[eca k=5 seed 0] resuming" in r.stdout
    for bad, msg in [("2", "k must be odd"), ("3,x", "--k must be a comma-separated list of ints"),
                     ("3,3", "must not repeat")]:
        r = run("ablate", "--attention", "eca", "--k", bad, "--seeds", "0", "--data-dir", data_dir,
                "--out", tmp_path / "bad")
        assert r.exit_code == 2 and msg in one_error_line(r), r.output
    r = run("ablate", "--attention", "none,se", "--k", "3", "--seeds", "0", "--data-dir", data_dir,
            "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "k applies only to the variants with a kernel" in one_error_line(r)
