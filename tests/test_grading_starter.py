"""The starter's self-check (``python eca_assignment.py``) flags each mistake the grader names.

Each broken submission is correct.py plus one file of tests/grading_fixtures/mistakes/ (as in
tests/test_grading.py), followed by the starter's own self-check code; running it must print
at least one line that is not "ok" where the mistake is, and "all checks ok" on the correct code.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eca_ref.grading import starter_source

FIXTURES = Path(__file__).with_name("grading_fixtures")
MISTAKES = FIXTURES / "mistakes"
MARK = "# =========================================================== check yourself"

# mistake -> the self-check lines that must not say ok (None: the check never finishes)
EXPECTED = {
    "no_gap_path": {"eca dx", "se dx"},
    "flipped_kernel": {"eca shift"},
    "several_bugs": {"gap", "sigmoid big", "se dw1", "kernel_size"},
    "returns_nan": {"gap", "eca dw"},
    "raises": {"eca dx", "eca dw", "eca shift", "eca vs band"},
    "wrong_types": {"gap", "sigmoid", "sigmoid big", "se dx", "se dw1", "se dw2"},
    "memory_bomb": {"se dx", "se dw1", "se dw2"},
    "prints_megabytes": {"gap"},
    "infinite_loop": None,
}


def self_check_source(code: str) -> str:
    """``code`` (a whole submission) followed by the starter's self-check section."""
    return code + "\n\n" + MARK + starter_source().split(MARK)[1]


def mistake_source(name: str) -> str:
    mistake = (MISTAKES / f"{name}.py").read_text()
    code = mistake[mistake.index('"""', 3) + 3:]
    return (FIXTURES / "correct.py").read_text() + "\n\n" + code


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def run_self_check(tmp_path, code: str, timeout: float = 20):
    path = tmp_path / "eca_assignment.py"
    path.write_text(self_check_source(code))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        res = subprocess.run([sys.executable, path.name], cwd=tmp_path, capture_output=True, text=True,
                             timeout=timeout, env=env, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out
    return res.returncode, res.stdout


def verdicts(stdout: str) -> dict:
    """{check name: its line} of the self-check's report (lines start with the padded name)."""
    names = ["gap", "sigmoid", "sigmoid big", "eca dx", "eca dw", "eca shift", "eca vs band", "se dx", "se dw1",
             "se dw2", "kernel_size"]
    out = {}
    for line in stdout.splitlines():
        for n in names:
            if line.startswith(n.ljust(12)):
                out[n] = line
    return out


def test_self_check_says_ok_on_the_correct_solution(tmp_path):
    rc, out = run_self_check(tmp_path, (FIXTURES / "correct.py").read_text())
    assert rc == 0, out
    lines = verdicts(out)
    assert len(lines) == 11 and all(ln.endswith("ok") for ln in lines.values()), out
    assert out.rstrip().endswith("all checks ok")


def test_se_weights_keep_some_relu_units_alive_and_none_near_the_kink():
    """The reason the old self-check missed a backward without the GAP path: every ReLU unit was off."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 3)) + rng.standard_normal((2, 5, 1, 1))
    w1 = rng.standard_normal((3, 5))
    assert "rng.standard_normal((3, 5))" in starter_source()
    h = x.mean(axis=(2, 3)) @ w1.T
    assert (h > 0).sum() >= 2 and (h < 0).sum() >= 2 and np.abs(h).min() > 0.1


@pytest.mark.parametrize("name", sorted(p.stem for p in MISTAKES.glob("*.py")))
def test_self_check_flags_each_mistake(tmp_path, name):
    assert name in EXPECTED, f"new mistake {name}: say which self-check lines must flag it"
    expected = EXPECTED[name]
    rc, out = run_self_check(tmp_path, mistake_source(name), timeout=8 if expected is None else 60)
    if expected is None:  # an endless loop: the self-check never ends, and shows where it is stuck
        assert rc is None
        assert out.splitlines()[-1].startswith("kernel_size"), out[-500:]
        return
    lines = verdicts(out)
    flagged = {n for n, ln in lines.items() if not ln.endswith("ok")}
    assert expected <= flagged, out[-3000:]
    assert "all checks ok" not in out
    if name == "prints_megabytes":
        assert "remove debugging prints" in lines["gap"]


def test_self_check_of_the_bare_starter(tmp_path):
    (tmp_path / "eca_assignment.py").write_text(starter_source())
    res = subprocess.run([sys.executable, "eca_assignment.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert set(verdicts(res.stdout).values()) == {ln for ln in verdicts(res.stdout).values()
                                                  if ln.endswith("not implemented yet")}
    assert "11 check(s) not ok yet" in res.stdout
