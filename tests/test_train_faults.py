"""Faults around a run directory: the recorded data location, the lock, edited
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

from eca_ref import fileio
from eca_ref.data import make_fake_cifar10
from eca_ref.errors import CheckpointError, DataError
from eca_ref.train import evaluate_run, gate_statistics
from eca_ref.train.checkpoint import load_checkpoint
from eca_ref.train.lock import RunLock, RunLockedError
from eca_ref.train.loop import TrainConfig, resume, train
from eca_ref.train.rundir import RunWriteError
from cli_helpers import one_error_line, run

TINY = dict(depth=8, width=2, epochs=2, batch_size=16, seed=0)
TINY_CLI = ["--depth", "8", "--width", "2", "--batch-size", "16", "--epochs", "2", "--seed", "0"]




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
    assert r.exit_code == 2 and f"trained on the data in {tmp_path / 'gone'}" in one_error_line(r)
    with pytest.raises(DataError, match="point --data-dir"):
        gate_statistics(run_dir)
    # $ECA_REF_DATA holding other data: used with a note, and refused by the fingerprints
    monkeypatch.setenv("ECA_REF_DATA", str(other_data))
    r = run("train", "--resume", run_dir)
    assert r.exit_code == 2 and "not the data this run was trained on" in one_error_line(r)
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
        line = one_error_line(r)
        assert f"{run_dir} is in use by another eca-ref run (PID {os.getpid()}" in line
        with pytest.raises(RunLockedError):
            resume(run_dir, data_dir=data_dir)
        r = run("train", *TINY_CLI, "--out", tmp_path / "new", "--data-dir", data_dir)   # another folder: fine
        assert r.exit_code == 0, r.output
        with RunLock(tmp_path / "new"):
            r = run("train", *TINY_CLI, "--out", tmp_path / "new", "--data-dir", data_dir)
            assert r.exit_code == 2 and "in use" in one_error_line(r)
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
    assert "batch_in_epoch 7 is outside [0, 3)" in one_error_line(r)
    assert (run_dir / "checkpoint.json").read_bytes() == before
    shutil.copy(mid_epoch / "checkpoint.json", run_dir / "checkpoint.json")    # the untouched one resumes
    assert resume(run_dir, data_dir=data_dir).status == "finished"


# ---------------------------------------------------------------- 4. SIGTERM

def test_sigterm_in_process_checkpoints_like_ctrl_c(data_dir, tmp_path):
    r = train(TrainConfig(**TINY), tmp_path / "t", data_dir=data_dir, reporter=_Signal(signal.SIGTERM, 2, 1))
    assert r.status == "interrupted" and r.signal == "SIGTERM" and r.step == 4 and "SIGTERM" in r.message
    assert load_checkpoint(tmp_path / "t")[1]["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL                 # handler restored


def test_sigterm_to_the_cli_then_resume_is_bit_identical(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_fake_cifar10(data, n_train=160, n_test=20, seed=0, formats=("binary",))
    cfg = dict(TINY, epochs=12)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env.pop("ECA_REF_DATA", None)
    cmd = [sys.executable, "-c", "from eca_ref.cli import main; main()", "train", "--depth", "8", "--width", "2",
           "--batch-size", "16", "--epochs", "12", "--seed", "0", "--threads", "2", "--workers", "processes",
           "--out", str(out), "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in proc.stdout:                    # SIGTERM once the first epoch's line is out
        seen.append(line)
        if line.lstrip().startswith("epoch   1"):
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, ("".join(seen) + rest, err)
    assert "Traceback" not in err and "leaked" not in err and "resource_tracker" not in err, err
    assert [s for s in err.splitlines() if s.strip()][-1].startswith("Stopped by SIGTERM "), err
    assert f"eca-ref train --resume {out}" in err
    _, meta = load_checkpoint(out)
    assert meta["status"] in ("interrupted", "running") and 1 <= meta["epoch"] < 12
    monkeypatch.delenv("ECA_REF_DATA", raising=False)                # the resume finds the recorded data
    resumed = resume(out, threads=2, workers="threads")
    assert resumed.status == "finished" and resumed.epoch == 12
    straight = train(TrainConfig(**cfg), tmp_path / "straight", data_dir=data, threads=2, workers="threads")
    for name in ("params", "buffers", "momentum"):
        a, b = getattr(straight, name), getattr(resumed, name)
        assert all(np.array_equal(a[k], b[k]) for k in a), name


# ---------------------------------------------------------------- 5. the hint after divergence

def test_divergence_after_resume_suggests_what_can_be_done(data_dir, tmp_path, monkeypatch):
    from eca_ref.functional import loss as loss_mod
    real = loss_mod.softmax_cross_entropy
    train(TrainConfig(**TINY), tmp_path / "d", data_dir=data_dir, stop_after=1)

    def poisoned(logits, y, **kw):
        loss, d = real(logits, y, **kw)
        return float("nan"), d

    monkeypatch.setattr(loss_mod, "softmax_cross_entropy", poisoned)
    r = run("train", "--resume", tmp_path / "d", "--data-dir", data_dir)
    assert r.exit_code == 1
    line = one_error_line(r)
    assert "Try a lower --lr" not in line
    assert "start a new run with a lower --lr" in line and "--lr 0.1" in line and "another --out" in line
    assert load_checkpoint(tmp_path / "d")[1]["epoch"] == 1                 # the last good checkpoint


# ---------------------------------------------------------------- 6. disk full, permission denied

def _failing_replace(match, err):
    real = os.replace

    def replace(src, dst, *a, **kw):
        if match in os.path.basename(str(dst)):
            raise OSError(err, os.strerror(err), str(src))
        return real(src, dst, *a, **kw)
    return replace


@pytest.mark.parametrize("name, err, hint", [
    ("config.json", errno.ENOSPC, "No space left on device; free some space, or choose another --out"),
    ("metrics.jsonl", errno.EACCES, "Permission denied; make the folder writable, or choose another --out"),
    ("checkpoint-s", errno.ENOSPC, "No space left on device; free some space, or choose another --out"),
    ("checkpoint.json", errno.EROFS, "Read-only file system; make the folder writable, or choose another --out"),
])
def test_a_fresh_run_that_cannot_write_says_which_file(data_dir, tmp_path, monkeypatch, name, err, hint):
    monkeypatch.setattr(fileio.os, "replace", _failing_replace(name, err))
    out = tmp_path / "r"
    r = run("train", *TINY_CLI, "--out", out, "--data-dir", data_dir)
    assert r.exit_code == 1
    line = one_error_line(r)
    assert line.startswith(f"Error: cannot write {out}/{name}") and line.endswith(hint), line
    assert not list(out.glob(".*.tmp"))                                      # no temporary file left
    monkeypatch.undo()
    r = run("train", *TINY_CLI, "--out", out, "--data-dir", data_dir)         # the same --out works afterwards
    assert r.exit_code == 0, r.output


def test_disk_full_at_an_epoch_end_keeps_the_last_checkpoint(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "r"
    train(TrainConfig(**TINY), out, data_dir=data_dir, stop_after=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(fileio.os, "replace", _failing_replace("checkpoint-s", errno.ENOSPC))
    with pytest.raises(RunWriteError, match=rf"cannot write {out}/checkpoint-s00000006.npz: No space left on device; "
                                            rf"the last checkpoint is kept: free some space, then continue with: "
                                            rf"eca-ref train --resume {out}"):
        resume(out, data_dir=data_dir)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.undo()
    assert resume(out, data_dir=data_dir).status == "finished"


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs Linux and root")
@pytest.mark.parametrize("size", ["8k", "64k"])
def test_a_real_full_disk(data_dir, tmpfs, size):
    out = tmpfs(size) / "r"
    r = run("train", *TINY_CLI, "--out", out, "--data-dir", data_dir)
    assert r.exit_code == 1, r.output
    line = one_error_line(r)
    assert line.startswith(f"Error: cannot write {out}/") and "No space left on device" in line, line
    if (out / "checkpoint.json").exists():                                   # what was written stays valid
        assert "--resume" in line
        assert load_checkpoint(out)[1]["epoch"] in (0, 1)
    else:
        assert "choose another --out" in line
