"""Faults around a run directory (issue 19): the recorded data location, the lock, edited
checkpoints, SIGTERM, the hint after divergence, disk full and permission denied."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from eca_ref import fileio
from eca_ref.cli import main
from eca_ref.data import make_fake_cifar10
from eca_ref.errors import CheckpointError, DataError
from eca_ref.train import evaluate_run, gate_statistics
from eca_ref.train.checkpoint import load_checkpoint
from eca_ref.train.lock import RunLock, RunLockedError
from eca_ref.train.loop import TrainConfig, resume, train
from eca_ref.train.rundir import RunWriteError

TINY = dict(depth=8, width=2, epochs=2, batch_size=16, seed=0)
TINY_CLI = ["--depth", "8", "--width", "2", "--batch-size", "16", "--epochs", "2", "--seed", "0"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(r):
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    make_fake_cifar10(root, n_train=40, n_test=20, seed=0, formats=("binary",))
    return root


@pytest.fixture(scope="module")
def other_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("other")
    make_fake_cifar10(root, n_train=40, n_test=20, seed=7, formats=("binary",))
    return root


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """A new shell: no $ECA_REF_DATA, and a home without ~/.cache/eca-ref."""
    monkeypatch.delenv("ECA_REF_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


class _Signal:
    def __init__(self, sig, epoch, batch):
        self.sig, self.epoch, self.batch = sig, epoch, batch

    def on_batch(self, epoch, batch, *a):
        if (epoch, batch) == (self.epoch, self.batch):
            signal.raise_signal(self.sig)


@pytest.fixture(scope="module")
def mid_epoch(data_dir, tmp_path_factory):
    """A run stopped in the middle of epoch 2 (epoch 1, batch 1, step 4): every field in use."""
    out = tmp_path_factory.mktemp("runs") / "mid"
    r = train(TrainConfig(**TINY), out, data_dir=data_dir, reporter=_Signal(signal.SIGINT, 2, 1))
    assert r.status == "interrupted" and r.step == 4 and r.signal == "SIGINT"
    return out


# ---------------------------------------------------------------- 1. the recorded data location

def test_resume_evaluate_gates_use_the_recorded_data(mid_epoch, data_dir, other_data, tmp_path, no_env, monkeypatch):
    run_dir = tmp_path / "r"
    shutil.copytree(mid_epoch, run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["data"]["root"] == str(data_dir) and os.path.isabs(cfg["data"]["root"])
    monkeypatch.setenv("ECA_REF_DATA", str(other_data))       # the recorded location wins over the environment
    r = run("train", "--resume", run_dir)
    assert r.exit_code == 0, r.output
    assert f"using the data recorded in {run_dir / 'checkpoint.json'}: {data_dir}" in r.stderr
    for cmd in ("evaluate", "gates"):
        r = run(cmd, run_dir, "--json")
        assert r.exit_code == 0, r.output
        assert "using the data recorded in" in r.stderr and json.loads(r.stdout)["n"] == 20
    assert evaluate_run(run_dir).data_root == data_dir
    # --data-dir given wins over the recorded location (and is checked: other data is refused)
    r = run("evaluate", run_dir, "--data-dir", data_dir)
    assert r.exit_code == 0 and "recorded" not in r.stderr


def test_recorded_data_gone(mid_epoch, data_dir, other_data, tmp_path, no_env, monkeypatch):
    moved = tmp_path / "moved"
    shutil.copytree(data_dir, moved)
    run_dir = tmp_path / "r"
    shutil.copytree(mid_epoch, run_dir)
    for name, keys in (("config.json", ("data",)), ("checkpoint.json", ("meta", "data"))):
        doc = json.loads((run_dir / name).read_text())
        d = doc
        for k in keys:
            d = d[k]
        d["root"] = str(tmp_path / "gone")
        (run_dir / name).write_text(json.dumps(doc))
    before = (run_dir / "checkpoint.json").read_bytes()
    # no copy anywhere: one line naming the recorded location
    r = run("train", "--resume", run_dir)
    assert r.exit_code == 2 and f"trained on the data in {tmp_path / 'gone'}" in _one_error_line(r)
    with pytest.raises(DataError, match="point --data-dir"):
        gate_statistics(run_dir)
    # $ECA_REF_DATA holding other data: used with a note, and refused by the fingerprints
    monkeypatch.setenv("ECA_REF_DATA", str(other_data))
    r = run("train", "--resume", run_dir)
    assert r.exit_code == 2 and "not the data this run was trained on" in _one_error_line(r)
    with pytest.raises(CheckpointError, match="not the data this run was tested on"):
        evaluate_run(run_dir)
    assert (run_dir / "checkpoint.json").read_bytes() == before
    # $ECA_REF_DATA holding the same data, moved: fine
    monkeypatch.setenv("ECA_REF_DATA", str(moved))
    r = run("evaluate", run_dir)
    assert r.exit_code == 0 and "no longer exists; using $ECA_REF_DATA" in r.stderr


# ---------------------------------------------------------------- 2. the lock

def test_a_run_dir_in_use_is_refused(mid_epoch, data_dir, tmp_path):
    run_dir = tmp_path / "r"
    shutil.copytree(mid_epoch, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"}
    with RunLock(run_dir):
        r = run("train", "--resume", run_dir, "--data-dir", data_dir)
        assert r.exit_code == 2
        line = _one_error_line(r)
        assert f"{run_dir} is in use by another eca-ref run (PID {os.getpid()}" in line
        with pytest.raises(RunLockedError):
            resume(run_dir, data_dir=data_dir)
        r = run("train", *TINY_CLI, "--out", tmp_path / "new", "--data-dir", data_dir)   # another folder: fine
        assert r.exit_code == 0, r.output
        with RunLock(tmp_path / "new"):
            r = run("train", *TINY_CLI, "--out", tmp_path / "new", "--data-dir", data_dir)
            assert r.exit_code == 2 and "in use" in _one_error_line(r)
        r = run("evaluate", run_dir, "--data-dir", data_dir)                # readers take no lock
        assert r.exit_code == 0, r.output
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"} == before
    assert resume(run_dir, data_dir=data_dir).status == "finished"       # released


def test_a_stale_lock_is_taken_over(data_dir, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "r"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "started": "2024-01-01T00:00:00"}))
    r = run("train", *TINY_CLI, "--out", out, "--data-dir", data_dir)
    assert r.exit_code == 0, r.output
    assert f"taking over the stale lock of {out} (PID {dead.pid}" in r.stderr
    assert (out / ".lock").read_text() == ""                        # released when the run ended


# ---------------------------------------------------------------- 3. edited checkpoints

EDITS = {
    "batch beyond the epoch": lambda m: m.update(batch_in_epoch=9, step=1 * 3 + 9),
    "step off by one": lambda m: m.update(step=m["step"] + 1),
    "step of the next epoch": lambda m: m.update(step=6),
    "epoch beyond epochs": lambda m: m.update(epoch=5, step=16, metrics=m["metrics"] * 5),
    "metrics missing": lambda m: m.update(metrics=[]),
    "seen too large": lambda m: m["partial"].update(seen=48),
    "correct above seen": lambda m: m["partial"].update(correct=17),
    "negative loss sum": lambda m: m["partial"].update(loss_sum=-1.0),
    "status finished": lambda m: m.update(status="finished"),
    "lr_next edited": lambda m: m["optimizer"].update(lr_next=0.5),
    "momentum edited": lambda m: m["optimizer"].update(momentum=0.5),
    "schedule edited": lambda m: m["schedule"].update(total_steps=12),
    "mean edited": lambda m: m["data"].update(mean=[0.5, 0.5, 0.5]),
    "metrics of another epoch": lambda m: m["metrics"][0].update(epoch=2),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_checkpoint_is_refused_and_left_as_it_is(mid_epoch, data_dir, tmp_path, edit):
    run_dir = tmp_path / "r"
    shutil.copytree(mid_epoch, run_dir)
    path = run_dir / "checkpoint.json"
    doc = json.loads(path.read_text())
    EDITS[edit](doc["meta"])
    path.write_text(json.dumps(doc))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(CheckpointError, match="inconsistent checkpoint"):
        resume(run_dir, data_dir=data_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_an_edited_checkpoint_on_the_cli(mid_epoch, data_dir, tmp_path):
    run_dir = tmp_path / "r"
    shutil.copytree(mid_epoch, run_dir)
    doc = json.loads((run_dir / "checkpoint.json").read_text())
    doc["meta"]["batch_in_epoch"] = 7
    (run_dir / "checkpoint.json").write_text(json.dumps(doc))
    before = (run_dir / "checkpoint.json").read_bytes()
    r = run("train", "--resume", run_dir, "--data-dir", data_dir)
    assert r.exit_code == 2
    assert "batch_in_epoch 7 is outside [0, 3)" in _one_error_line(r)
    assert (run_dir / "checkpoint.json").read_bytes() == before
    shutil.copy(mid_epoch / "checkpoint.json", run_dir / "checkpoint.json")    # the untouched one resumes
    assert resume(run_dir, data_dir=data_dir).status == "finished"
