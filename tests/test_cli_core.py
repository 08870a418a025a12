import json

import pytest
from click.testing import CliRunner

from eca_ref.cli import main


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args))


def test_kernel_size_single(run):
    r = run("kernel-size", "--channels", "512")
    assert r.exit_code == 0
    assert "k = 5" in r.output and "(log2 512 + 1) / 2 = 5" in r.output and "odd" in r.output


def test_kernel_size_range_json(run):
    r = run("kernel-size", "--channels", "16:4096", "--json")
    rows = json.loads(r.output)
    assert [(d["C"], d["k"]) for d in rows] == [(16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5),
                                               (1024, 5), (2048, 7), (4096, 7)]
    assert [d["C"] for d in rows if d["tie"]] == [128, 2048]


def test_kernel_size_table_marks_ties(run):
    r = run("kernel-size", "-C", "4", "-C", "8", "-C", "128")
    assert r.exit_code == 0
    assert "tie 1/3" in r.output and "tie 3/5" in r.output and "timm" in r.output


@pytest.mark.parametrize("args,msg", [
    (["kernel-size", "--channels", "0"], "C >= 1"),
    (["kernel-size", "--channels", "abc"], "--channels must be an integer"),
    (["kernel-size", "--channels", "64", "--gamma", "0"], "gamma must be"),
    (["kernel-size", "--channels", "64:8"], "must go up"),
])
def test_kernel_size_errors_are_one_line(run, args, msg):
    r = run(*args)
    assert r.exit_code == 2
    assert msg in r.output
    assert "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_verify_passes_and_prints_errors(run):
    r = run("verify", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert "85 passed, 0 failed" in r.output and "eca-band" in r.output and "FAIL" not in r.output


def test_verify_json(run):
    r = run("verify", "--json")
    rows = json.loads(r.output)
    assert {d["proof"] for d in rows} == {1, 2, 3, 4, 5}
    assert all(d["passed"] for d in rows)
    assert max(d["error"] for d in rows if d["proof"] == 1) < 1e-13
    names = " ".join(d["name"] for d in rows if d["proof"] == 3)
    for v in ("gap", "sigmoid", "se", "se-var3", "se-gc", "eca-ns", "eca-band", "ceca"):
        assert f"gradcheck {v}" in names


def test_verify_exits_1_on_failure(run, monkeypatch):
    import eca_ref.verify as ver
    monkeypatch.setitem(ver.PAPER_PARAM_FORMULA, "eca", lambda C, r, G, k: k + 1)
    r = run("verify")
    assert r.exit_code == 1 and "FAIL" in r.output


def test_unknown_backend_is_refused(run):
    r = run("--backend", "jax", "verify")
    assert r.exit_code == 2


def test_repo_root_shim_runs():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "cli.py"), "kernel-size", "--channels", "64"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "k = 3" in out.stdout


@pytest.mark.parametrize("args, expect", [
    (("kernel-size", "--channels"), "Error: Option '--channels' requires an argument"),
    (("--backend", "foo", "verify"), "Error: Invalid value for '--backend': 'foo' is not one of"),
    (("no-such-command",), "Error: No such command 'no-such-command' (see eca-ref --help)"),
    (("train", "--depth", "abc"), "Error: Invalid value for '--depth': 'abc' is not a valid integer (write it in ASCII digits 0-9) (see eca-ref train --help)"),
    (("data", "download", "--bogus"), "Error: No such option '--bogus'"),
])
def test_usage_errors_are_one_line(args, expect):
    r = CliRunner().invoke(main, list(args), prog_name="eca-ref")
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(expect), r.stderr
    assert "Usage:" not in r.output and "Traceback" not in r.output
