"""eca-ref assignment / eca-ref grade: the starter, the rubric, and the grader against hostile submissions.

Most fixtures are graded in ONE folder run (module-scoped) to keep the suite fast; the hostile
submission, which writes into the grader's working directory, runs alone in a temporary folder.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eca_ref.cli import main
from eca_ref.cli_grade import COMMANDS
from eca_ref.grading import (DEFAULT_RUBRIC, STARTER_VERSION, grade_source, grade_submission, gradescope_dict,
                             init_assignment, starter_source)
from eca_ref.grading import checks, runner, sandbox
from eca_ref.grading.runner import OutputTail, safe_load_npz

for _cmd in COMMANDS:
    if _cmd.name not in main.commands:
        main.add_command(_cmd)

FIXTURES = Path(__file__).with_name("grading_fixtures")
MISTAKES = FIXTURES / "mistakes"


def build_fixture(name: str) -> str:
    """A broken submission: correct.py with the code of mistakes/NAME.py appended (it redefines a few
    functions), under that file's docstring. One copy of the correct code serves every mistake."""
    mistake = (MISTAKES / f"{name}.py").read_text()
    end = mistake.index('"""', 3) + 3
    doc, code = mistake[:end], mistake[end:].lstrip("\n")
    correct = (FIXTURES / "correct.py").read_text()
    body = correct[correct.index('"""', 3) + 3:].strip("\n")
    return f"{doc}\n{body}\n\n\n{code}"


def fixture_source(name: str) -> str:
    """The text of a sample submission: a file of grading_fixtures/, or one built from mistakes/."""
    path = FIXTURES / f"{name}.py"
    return path.read_text() if path.exists() else build_fixture(name)


def test_committed_no_gap_path_is_the_built_one():
    """docs/ grade tests/grading_fixtures/no_gap_path.py, so that one is kept as a file; it must not drift."""
    assert (FIXTURES / "no_gap_path.py").read_text() == build_fixture("no_gap_path")
FAST = ["--timeout", "2", "--memory", "512"]
FOLDER_FIXTURES = ["correct", "no_gap_path", "flipped_kernel", "several_bugs", "infinite_loop", "memory_bomb",
                   "exit_at_import", "os_exit_at_import", "returns_nan", "wrong_types", "raises",
                   "prints_megabytes", "syntax_error"]


def _cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ------------------------------------------------------------------ the starter
def test_assignment_init_writes_starter_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "handout"
    r = _cli("assignment", "init", str(out))
    assert r.exit_code == 0, r.output
    assert "eca_assignment.py" in r.output and STARTER_VERSION in r.output
    assert (out / "eca_assignment.py").read_text() == starter_source()
    readme = (out / "README.md").read_text()
    assert "python eca_assignment.py" in readme and "eca_backward" in readme
    r = _cli("assignment", "init", str(out))
    assert r.exit_code == 2 and "already exist" in r.output and "--force" in r.output
    assert "Traceback" not in r.output
    (out / "README.md").write_text("changed")
    assert _cli("assignment", "init", str(out), "--force").exit_code == 0
    assert (out / "README.md").read_text() == readme
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_starter_interface_is_versioned_and_unimplemented(tmp_path):
    init_assignment(tmp_path)
    import importlib.util

    spec = importlib.util.spec_from_file_location("starter_copy", tmp_path / "eca_assignment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.STARTER_VERSION == STARTER_VERSION
    x = np.zeros((1, 2, 2, 2))
    for name, args in [("gap_forward", (x,)), ("gap_backward", (x, None)), ("sigmoid_forward", (x,)),
                       ("sigmoid_backward", (x, None)), ("eca_forward", (x, np.ones(3))),
                       ("eca_backward", (x, None)), ("eca_band_forward", (x, np.ones(3))),
                       ("se_forward", (x, np.ones((1, 2)), np.ones((2, 1)))), ("se_backward", (x, None)),
                       ("kernel_size", (8,))]:
        with pytest.raises(NotImplementedError):
            getattr(mod, name)(*args)
        assert "Returns" in getattr(mod, name).__doc__
    # the student's self-check runs on the bare starter
    res = subprocess.run([sys.executable, "eca_assignment.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "not implemented yet" in res.stdout


def test_self_check_of_the_starter_passes_on_a_correct_solution(tmp_path):
    """The starter's self-check says ok everywhere once the functions are right."""
    body = (FIXTURES / "correct.py").read_text()
    tail = starter_source().split("# =========================================================== check yourself")[1]
    (tmp_path / "sol.py").write_text(body + "\n# check yourself" + tail)
    res = subprocess.run([sys.executable, "sol.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if " error " in ln]
    assert len(lines) == 8 and all(ln.endswith("ok") for ln in lines), res.stdout
    assert "[1, 3, 3, 5, 5, 7]" in res.stdout


def test_rubric_command_and_points_file(tmp_path):
    r = _cli("assignment", "rubric", "--json")
    assert r.exit_code == 0
    points = json.loads(r.output)
    assert points == {e.name: e.points for e in DEFAULT_RUBRIC} and sum(points.values()) == 100
    r = _cli("assignment", "rubric")
    assert r.exit_code == 0 and "eca_backward" in r.output and "100 points" in r.output
    bad = tmp_path / "points.json"
    bad.write_text('{"eca_backwards": 20}')
    r = _cli("assignment", "rubric", "--points", str(bad))
    assert r.exit_code == 2 and "unknown rubric entry eca_backwards" in r.output
    bad.write_text('{"eca_backward": -1}')
    assert "must be a number >= 0" in _cli("assignment", "rubric", "--points", str(bad)).output
    bad.write_text("{not json")
    assert _cli("assignment", "rubric", "--points", str(bad)).exit_code == 2


# ------------------------------------------------------------------ grading: one folder run
@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    for name in FOLDER_FIXTURES:
        (folder / f"{name}.py").write_text(fixture_source(name))
    (folder / "starter.py").write_text(starter_source())
    reports = folder / "reports"
    t0 = time.monotonic()
    r = _cli("grade", str(folder), "--report-dir", str(reports), *FAST)
    seconds = time.monotonic() - t0
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((folder / "grades.csv").open()))
    results = {p.stem: json.loads(p.read_text()) for p in reports.glob("*.json")}
    return {"output": r.output, "rows": rows, "results": results, "seconds": seconds}


def _test(result, name):
    return next(t for t in result["tests"] if t["name"] == name)


def test_folder_csv_has_every_submission(folder_run):
    rows = {r["file"]: r for r in folder_run["rows"]}
    assert set(rows) == {f"{n}.py" for n in FOLDER_FIXTURES} | {"starter.py"}
    assert list(folder_run["rows"][0])[:4] == ["file", "score", "max_score", "status"]
    assert float(rows["correct.py"]["score"]) == 100
    assert float(rows["starter.py"]["score"]) == 0
    assert rows["syntax_error.py"]["status"] == "import-error"
    assert "wrote" in folder_run["output"] and "grades.csv" in folder_run["output"]
    assert folder_run["seconds"] < 60


def test_correct_submission_scores_full_marks(folder_run):
    res = folder_run["results"]["correct"]
    assert res["score"] == res["max_score"] == 100
    assert all(t["status"] == "passed" for t in res["tests"])
    assert [t["name"] for t in res["tests"]] == [e.name for e in DEFAULT_RUBRIC]
    assert res["extra_data"]["starter_version"] == STARTER_VERSION


def test_starter_scores_zero_with_not_implemented(folder_run):
    res = folder_run["results"]["starter"]
    assert res["score"] == 0
    assert all("not implemented yet" in t["output"] for t in res["tests"])


def test_missing_gap_path_is_named(folder_run):
    res = folder_run["results"]["no_gap_path"]
    assert _test(res, "eca_forward")["score"] == 15  # partial credit: the forward is right
    for name in ("eca_backward", "se_backward"):
        out = _test(res, name)["output"]
        assert "only the path through the rescale (dout * gate)" in out and "dx = dx_rescale + dx_pool" in out
    # partial credit: dx is wrong, dw is right, and the student sees it
    assert _test(res, "eca_backward")["score"] == 7.5 and "dw right" in _test(res, "eca_backward")["output"]
    assert _test(res, "se_backward")["score"] == 6.67 and "dw1 and dw2 right" in _test(res, "se_backward")["output"]


def test_flipped_kernel_is_named(folder_run):
    res = folder_run["results"]["flipped_kernel"]
    out = _test(res, "eca_forward")["output"]
    assert "kernel is flipped" in out and "cross-correlation" in out
    assert "kernel is flipped" in _test(res, "eca_band_forward")["output"]
    assert 0 < _test(res, "eca_forward")["score"] < 15  # k = 1 cannot be flipped
    assert _test(res, "gradcheck_eca")["score"] == 5  # its backward is consistent with its own forward
    assert "your eca_forward is wrong for this case too" in _test(res, "eca_backward")["output"]


def test_textbook_mistakes_are_named(folder_run):
    res = folder_run["results"]["several_bugs"]
    assert "misses the 1/(H*W)" in _test(res, "gap_backward")["output"]
    assert _test(res, "gap_backward")["score"] > 0  # H = W = 1 has nothing to divide
    assert "exp overflowed" in _test(res, "sigmoid_forward")["output"]
    assert "ReLU between w1 and w2 is missing" in _test(res, "se_forward")["output"]
    ks = _test(res, "kernel_size")["output"]
    assert "kernel_size(8): returned 1, expected 3: you round ties down" in ks
    assert _test(res, "eca_forward")["score"] == 15


def test_infinite_loop_is_stopped_and_the_rest_graded(folder_run):
    res = folder_run["results"]["infinite_loop"]
    ks = _test(res, "kernel_size")
    assert ks["score"] == 0 and "longer than the time limit of 2 s" in ks["output"]
    assert res["score"] == 95  # a fresh process graded everything else


def test_memory_bomb_is_contained(folder_run):
    res = folder_run["results"]["memory_bomb"]
    out = _test(res, "se_forward")["output"]
    assert "MemoryError" in out and "memory limit is 512 MiB" in out
    assert _test(res, "eca_backward")["score"] == 15 and res["score"] == 75


@pytest.mark.parametrize("name, text", [
    ("exit_at_import", "the submission called sys.exit(0) while being imported"),
    ("os_exit_at_import", "ended the grading process while being imported (exit status 0)"),
    ("syntax_error", "SyntaxError: expected ':' (line 4)"),
])
def test_import_failures_give_a_clear_zero(folder_run, name, text):
    res = folder_run["results"][name]
    assert res["score"] == 0 and res["extra_data"]["status"] == "import-error"
    assert text in res["output"]
    assert all(text in t["output"] for t in res["tests"])


def test_nan_wrong_shape_list_and_exceptions(folder_run):
    nan = folder_run["results"]["returns_nan"]
    assert "gap_forward's out contains NaN" in _test(nan, "gap_forward")["output"]
    assert _test(nan, "kernel_size")["score"] == 5
    wrong = folder_run["results"]["wrong_types"]
    assert "has shape (1, 5, 1, 1), expected (1, 5)" in _test(wrong, "gap_forward")["output"]
    assert "is a list, expected a numpy.ndarray" in _test(wrong, "sigmoid_forward")["output"]
    assert "se_forward must return a pair (out, cache), got type ndarray" in _test(wrong, "se_forward")["output"]
    raises = folder_run["results"]["raises"]
    out = _test(raises, "eca_forward")["output"]
    assert "IndexError: index 5 is out of bounds" in out and "in eca_forward)" in out and "(line " in out
    assert _test(raises, "se_backward")["score"] == 10


def test_megabytes_of_output_are_capped(folder_run):
    res = folder_run["results"]["prints_megabytes"]
    assert res["score"] == 100
    assert "bytes left out" in res["output"] and len(res["output"]) < 40_000


# ------------------------------------------------------------------ hostile: alone, in its own folder
def test_hostile_submission_cannot_cheat(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECA_GRADER_SECRET_TOKEN", "hunter2")
    r = _cli("grade", str(FIXTURES / "hostile.py"), "--json", "results.json", *FAST)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "results.json").read_text())
    out = res["output"]
    assert "ATTEMPT import eca_ref: blocked (ModuleNotFoundError)" in out
    assert "secret-looking: none" in out and "hunter2" not in out
    assert "ATTEMPT sys.path: no site-packages" in out
    assert "answer-like: none" in out
    assert res["score"] < 5
    # the background writer was killed with the process group: the results stay the grader's
    pid = int(out.split("background writer pid ")[1].split()[0])
    time.sleep(1.8)
    assert json.loads((tmp_path / "results.json").read_text()) == res
    if not sandbox.detect().pid_namespace:  # in a PID namespace the pid means nothing out here (see
        stat = Path(f"/proc/{pid}/stat")     # test_grading_hostile.py for the check that holds everywhere)
        assert not stat.exists() or stat.read_text().split(")")[1].split()[0] in ("Z", "X")


def test_answers_are_computed_only_after_the_child_is_gone(monkeypatch):
    seen = []
    original = checks.reference

    def spy(*args, **kwargs):
        seen.append(runner.live_children())
        return original(*args, **kwargs)

    monkeypatch.setattr(checks, "reference", spy)
    result = grade_submission(FIXTURES / "correct.py", timeout=2, seed=3)
    assert result.score == 100 and seen and set(seen) == {0}


def test_scores_are_deterministic_for_a_seed():
    src = fixture_source("several_bugs").encode()
    a = gradescope_dict(grade_source(src, "s.py", seed=7, timeout=2))
    b = gradescope_dict(grade_source(src, "s.py", seed=7, timeout=2))
    assert a == b


def test_whole_submission_time_limit(tmp_path):
    src = fixture_source("infinite_loop").encode()
    t0 = time.monotonic()
    result = grade_source(src, "loop.py", timeout=5, total_timeout=1.0)
    assert time.monotonic() - t0 < 4
    assert result.score == 0
    assert "whole submission's time limit (1 s)" in result.tests[0].output
    assert all("whole submission's time limit" in t.output for t in result.tests)


def test_grader_error_still_gives_a_result(monkeypatch, tmp_path):
    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_submission", broken)
    r = _cli("grade", str(FIXTURES / "correct.py"), "--json", str(tmp_path / "r.json"))
    assert r.exit_code == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["score"] == 0 and res["extra_data"]["status"] == "grader-error" and "boom" in res["output"]


# ------------------------------------------------------------------ CLI errors and options
@pytest.mark.parametrize("args, text", [
    (["grade", "no/such/file.py"], "submission not found: no/such/file.py"),
    (["grade", "{fix}/correct.py", "--csv", "x.csv"], "--csv and --report-dir are for a folder"),
    (["grade", "{fix}", "--json", "x.json"], "--json is for one submission"),
    (["grade", "{fix}/correct.py", "--json", "no/dir/r.json"], "folder of --json does not exist"),
    (["grade", "{empty}"], "no .py files to grade in"),
    (["grade", "{fix}/correct.py", "--points", "missing.json"], "points file not found"),
])
def test_cli_errors_are_one_line(tmp_path, args, text):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(fix=FIXTURES, empty=empty) for a in args]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert text in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_single_submission_table_json_and_points(tmp_path):
    points = tmp_path / "points.json"
    points.write_text('{"eca_backward": 30, "kernel_size": 0}')
    r = _cli("grade", str(FIXTURES / "no_gap_path.py"), "--json", str(tmp_path / "r.json"), "--points",
             str(points), "--seed", "5", *FAST)
    assert r.exit_code == 0, r.output
    assert "no_gap_path.py" in r.output and "eca_backward" in r.output and "total" in r.output
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["max_score"] == 100 - 5 + 15
    assert _test(res, "eca_backward")["max_score"] == 30 and _test(res, "kernel_size")["max_score"] == 0
    assert res["extra_data"]["seed"] == 5
    assert {"name", "score", "max_score", "output"} <= set(res["tests"][0])


# ------------------------------------------------------------------ the building blocks
def test_safe_load_npz_rejects_pickles_and_lies(tmp_path):
    ok = tmp_path / "ok.npz"
    np.savez(ok, a=np.arange(6.0).reshape(2, 3), b=np.array([3], dtype=np.int64))
    arrays = safe_load_npz(ok)
    assert arrays["a"].shape == (2, 3) and arrays["b"][0] == 3
    obj = tmp_path / "obj.npz"
    np.savez(obj, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="dtype"):
        safe_load_npz(obj)
    liar = tmp_path / "liar.npz"  # a header that claims 10**12 elements
    d = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header = d + b" " * ((-(10 + len(d) + 1)) % 64) + b"\n"
    with zipfile.ZipFile(liar, "w") as zf:
        zf.writestr("a.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 16)
    with pytest.raises(ValueError, match="size disagrees"):
        safe_load_npz(liar)
    with zipfile.ZipFile(tmp_path / "odd.npz", "w") as zf:
        zf.writestr("evil.pkl", b"cos\nsystem\n")
    with pytest.raises(ValueError, match="unexpected member"):
        safe_load_npz(tmp_path / "odd.npz")
    (tmp_path / "not-a-zip.npz").write_bytes(b"PK\x03\x04 but nothing after")
    with pytest.raises(ValueError, match="not an .npz archive"):
        safe_load_npz(tmp_path / "not-a-zip.npz")


def test_output_tail_keeps_head_and_tail():
    t = OutputTail(keep=10)
    for _ in range(1000):
        t.feed(b"0123456789")
    text = t.text()
    assert text.startswith("0123456789") and text.endswith("0123456789")
    assert "9,980 bytes left out" in text and t.total == 10_000


def test_child_environment_is_built_from_scratch(tmp_path):
    env = runner._child_env(tmp_path)
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED",
                        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}
    assert env["HOME"] == str(tmp_path)


def test_reference_interface_matches_the_independent_solution():
    """The grader's answers (built on eca_ref) equal an independent plain-NumPy implementation."""
    import importlib.util

    from eca_ref.grading import solution as sol

    spec = importlib.util.spec_from_file_location("correct_fixture", FIXTURES / "correct.py")
    ind = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ind)
    rng = np.random.default_rng(0)
    x, w, dout = rng.standard_normal((2, 6, 3, 2)), rng.standard_normal(5), rng.standard_normal((2, 6, 3, 2))
    w1, w2 = rng.standard_normal((3, 6)), rng.standard_normal((6, 3))
    for fwd, bwd, args in [("eca_forward", "eca_backward", (x, w)), ("se_forward", "se_backward", (x, w1, w2))]:
        o1, c1 = getattr(sol, fwd)(*args)
        o2, c2 = getattr(ind, fwd)(*args)
        np.testing.assert_allclose(o1, o2, rtol=1e-12, atol=1e-14)
        for g1, g2 in zip(getattr(sol, bwd)(dout, c1), getattr(ind, bwd)(dout, c2)):
            np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sol.eca_band_forward(x, w)[0], ind.eca_band_forward(x, w)[0], rtol=1e-12)
    assert [sol.kernel_size(c) for c in range(1, 3000, 7)] == [ind.kernel_size(c) for c in range(1, 3000, 7)]


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX only")
def test_no_child_is_left_running():
    assert runner.live_children() == 0


def test_grad_error_does_not_fail_a_correct_gradient_with_a_near_zero_entry():
    ana = np.array([0.5, -0.3, 2e-9])
    num = ana + np.array([1e-11, -1e-11, 1e-11])  # central differences' own error
    assert checks.grad_error(num, ana) < 1e-10
    assert checks.grad_error(ana * 0.9, ana) > 1e-2  # a real mistake is still caught


@pytest.mark.parametrize("seed", [1, 2])
def test_correct_submission_scores_full_marks_for_other_seeds(seed):
    assert grade_submission(FIXTURES / "correct.py", timeout=2, seed=seed).score == 100


def test_a_downstream_failure_names_the_upstream_fix():
    """gap_backward without 1/(H*W), used by eca_backward: the report says to fix gap_backward first."""
    src = (FIXTURES / "correct.py").read_text() + (
        "\n\ndef _gap_back(dy, shape):\n    N, C, H, W = shape\n"
        "    return np.broadcast_to(dy[:, :, None, None], shape).copy()  # forgot / (H * W)\n")
    result = grade_source(src.encode(), "upstream.py", timeout=2)
    by = {t.name: t for t in result.tests}
    assert "misses the 1/(H*W)" in by["gap_backward"].output
    eca = by["eca_backward"]
    assert "fix gap_backward first" in eca.output and "dw right" in eca.output
    assert 0 < eca.score < 15 and "fix gap_backward first" in by["se_backward"].output
