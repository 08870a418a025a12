"""``eca-ref assignment autograder OUT.zip``: the Gradescope zip, run end to end in a fake /autograder tree.

The zip is built once (with a real wheel of this checkout). Each test unpacks it as Gradescope does
(the zip's files in source/, run_autograder copied to the root, the student's files in
submission/) and runs the real ``run_autograder`` script with AUTOGRADER_ROOT pointing at the
tree; ECA_REF_AUTOGRADER_PYTHON is this Python, where eca_ref is importable, instead of the venv
that setup.sh would make (installing NumPy and SciPy into a fresh venv is too slow for a test;
setup.sh's content is checked separately). Also: the similarity note to the teacher.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import eca_ref
from eca_ref.cli import main
from eca_ref.cli_grade import COMMANDS
from eca_ref.errors import InputError
from eca_ref.grading import autograder, similarity

for _cmd in COMMANDS:
    if _cmd.name not in main.commands:
        main.add_command(_cmd)

FIXTURES = Path(__file__).with_name("grading_fixtures")
CORRECT = (FIXTURES / "correct.py").read_text()
REPO = Path(eca_ref.__file__).resolve().parents[1]
GRADESCOPE_KEYS = {"score", "output", "output_format", "execution_time", "tests"}
TEST_KEYS = {"name", "score", "max_score", "status", "output", "visibility"}


def _cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zip")
    (folder / "points.json").write_text(json.dumps({"se_backward": 20}))
    out = folder / "autograder.zip"
    r = _cli("assignment", "autograder", str(out), "--points", str(folder / "points.json"), "--seed", "7",
             "--timeout", "2", "--hidden", "gradcheck_se", "--after-published", "eca_backward")
    assert r.exit_code == 0, r.output
    return out


def gradescope(zip_path, tmp_path, files: dict) -> tuple:
    """Lay out /autograder under tmp_path, run the real run_autograder; (exit status, results.json, stdout)."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    for name, data in files.items():
        path = root / "submission" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), ECA_REF_AUTOGRADER_PYTHON=sys.executable,
               PYTHONPATH=str(REPO))
    res = subprocess.run(["bash", str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    results = json.loads((root / "results" / "results.json").read_text())
    return res.returncode, results, res.stdout + res.stderr


# ------------------------------------------------------------------ the zip
def test_zip_layout_wheel_and_frozen_config(zip_path, tmp_path):
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert {"setup.sh", "run_autograder", "constraints.txt", "eca_autograder.json"} <= set(names)
        assert all("/" not in n for n in names)                      # everything at the zip's root
        for script in ("setup.sh", "run_autograder"):
            assert zf.getinfo(script).external_attr >> 16 & 0o111     # executable
        config = json.loads(zf.read("eca_autograder.json"))
        wheel = [n for n in names if n.endswith(".whl")]
        assert wheel == [config["wheel"]] and wheel[0].startswith(f"eca_ref-{config['eca_ref_version']}-")
        zf.extract(wheel[0], tmp_path)
        constraints = zf.read("constraints.txt").decode()
    assert config["eca_ref_version"] == autograder._version()
    assert config["seed"] == 7 and config["timeout"] == 2 and config["memory_mb"] == 512
    assert config["points"]["se_backward"] == 20 and sum(config["points"].values()) == 110
    assert config["visibility"]["gradcheck_se"] == "hidden"
    assert config["visibility"]["eca_backward"] == "after_published"
    assert config["visibility"]["kernel_size"] == "visible"
    assert "numpy==" in constraints and "scipy==" in constraints
    with zipfile.ZipFile(tmp_path / wheel[0]) as whl:   # the wheel carries the code that grades, scripts too
        inside = set(whl.namelist())
    for f in ("eca_ref/grading/autograder.py", "eca_ref/grading/starter_template.py",
              "eca_ref/grading/worker.py", "eca_ref/grading/autograder_files/run_autograder",
              "eca_ref/grading/autograder_files/setup.sh", "eca_ref/functional/pooling.py"):
        assert f in inside, f


def test_setup_sh_installs_the_bundled_wheel_into_its_own_venv(zip_path):
    with zipfile.ZipFile(zip_path) as zf:
        setup = zf.read("setup.sh").decode()
        run = zf.read("run_autograder").decode()
    assert subprocess.run(["bash", "-n", "-c", setup]).returncode == 0
    assert subprocess.run(["bash", "-n", "-c", run]).returncode == 0
    assert setup.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in setup
    assert 'python3 -m venv "$here/venv"' in setup
    assert '-c "$here/constraints.txt" "$wheel"' in setup and 'eca_ref-*.whl' in setup
    assert "-m eca_ref.grading.autograder --check" in setup
    assert 'py="${ECA_REF_AUTOGRADER_PYTHON:-$root/source/venv/bin/python}"' in run
    assert 'root="${AUTOGRADER_ROOT:-/autograder}"' in run


def test_check_says_ready_and_refuses_another_version(zip_path, tmp_path):
    with zipfile.ZipFile(zip_path) as zf:
        zf.extract("eca_autograder.json", tmp_path)
    assert "autograder ready: 110 points, seed 7" in autograder.check(tmp_path)
    config = json.loads((tmp_path / "eca_autograder.json").read_text())
    (tmp_path / "eca_autograder.json").write_text(json.dumps(dict(config, eca_ref_version="0.0.1")))
    with pytest.raises(InputError, match="made with eca-ref 0.0.1"):
        autograder.check(tmp_path)


# ------------------------------------------------------------------ end to end
def test_a_correct_submission_scores_full_marks_on_gradescope(zip_path, tmp_path):
    rc, res, out = gradescope(zip_path, tmp_path, {"eca_assignment.py": CORRECT})
    assert rc == 0, out
    assert GRADESCOPE_KEYS <= set(res) and res["output_format"] == "markdown"
    assert res["score"] == 110 and 0 < res["execution_time"] < 60
    assert [t["name"] for t in res["tests"]][:2] == ["kernel_size", "gap_forward"]
    for t in res["tests"]:
        assert TEST_KEYS <= set(t) and t["status"] == "passed" and t["score"] == t["max_score"], t
    vis = {t["name"]: t["visibility"] for t in res["tests"]}
    assert vis["gradcheck_se"] == "hidden" and vis["eca_backward"] == "after_published"
    assert vis["kernel_size"] == "visible"
    # the markdown summary shows only the visible tests, and no total while some are held back
    assert "| kernel_size | 5/5 |" in res["output"] and "gradcheck_se" not in res["output"]
    assert "eca_backward" not in res["output"] and "110 / 110" not in res["output"]
    assert "seed 7" in res["output"]
    assert not any(t["name"] == autograder.SIMILARITY_TEST for t in res["tests"])


def test_a_notebook_with_a_mistake_in_a_subfolder(zip_path, tmp_path):
    mistake = (FIXTURES / "no_gap_path.py").read_text()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": "%matplotlib inline\n" + mistake}]}
    rc, res, out = gradescope(zip_path, tmp_path, {"work/my_eca.ipynb": json.dumps(nb), "work/notes.md": "hi"})
    assert rc == 0, out
    assert "`my_eca.ipynb`" in res["output"]
    by = {t["name"]: t for t in res["tests"]}
    assert by["eca_forward"]["score"] == 15 and by["eca_backward"]["score"] < 15
    assert by["eca_backward"]["status"] == "failed" and "GAP" in by["eca_backward"]["output"]
    assert 0 < res["score"] < 110


def test_a_near_copy_of_the_reference_gets_a_hidden_note_and_its_score(zip_path, tmp_path):
    rc, res, out = gradescope(zip_path, tmp_path, {"eca_assignment.py": CORRECT + "\n\n" + near_copy()})
    assert rc == 0, out
    note = [t for t in res["tests"] if t["name"] == autograder.SIMILARITY_TEST]
    assert len(note) == 1 and note[0]["visibility"] == "hidden" and note[0]["max_score"] == 0
    assert "copied_gap_backward" in note[0]["output"] and "0.90" in note[0]["output"]
    assert res["score"] == 110                               # never a change of score
    assert "similarity" not in res["output"]                 # students do not see it


@pytest.mark.parametrize("files, words", [
    ({}, "no .py or .ipynb file was submitted"),
    ({"a.py": CORRECT, "b.py": CORRECT}, "2 .py/.ipynb files were submitted"),
    ({"eca_assignment.ipynb": "{not json"}, "cannot read notebook eca_assignment.ipynb"),
])
def test_nothing_to_grade_is_a_zero_with_a_reason(zip_path, tmp_path, files, words):
    rc, res, out = gradescope(zip_path, tmp_path, files)
    assert rc == 0, out
    assert res["score"] == 0 and res["tests"] == [] and words in res["output"]
    assert res["output_format"] == "markdown" and "execution_time" in res


def test_the_grader_failing_to_start_still_writes_results(zip_path, tmp_path, monkeypatch):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), ECA_REF_AUTOGRADER_PYTHON=str(tmp_path / "no-python"))
    res = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0 and "tell your teacher" in data["output"]


# ------------------------------------------------------------------ the command's checks
def test_autograder_command_refuses_bad_options(tmp_path, zip_path):
    r = _cli("assignment", "autograder", str(zip_path))
    assert r.exit_code == 2 and "--force" in r.output
    r = _cli("assignment", "autograder", str(tmp_path / "a.zip"), "--hidden", "no_such_test")
    assert r.exit_code == 2 and "no rubric entry 'no_such_test'" in r.output and "Traceback" not in r.output
    r = _cli("assignment", "autograder", str(tmp_path / "nofolder" / "a.zip"), "--wheel", str(zip_path))
    assert r.exit_code == 2 and "folder does not exist" in r.output
    r = _cli("assignment", "autograder", str(tmp_path / "a.zip"), "--wheel", str(zip_path))
    assert r.exit_code == 2 and "not an eca-ref wheel" in r.output
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*partial"))
    config = autograder.make_config(visibility={"all": "hidden", "kernel_size": "visible"})
    assert set(config["visibility"].values()) == {"hidden", "visible"}
    assert config["visibility"]["kernel_size"] == "visible"


# ------------------------------------------------------------------ similarity (a note, never a score)
def near_copy() -> str:
    """The reference's GAP forward and backward, pasted with the backend call replaced by NumPy, renamed."""
    import ast

    src = (REPO / "eca_ref" / "functional" / "pooling.py").read_text()
    funcs = [ast.get_source_segment(src, n) for n in ast.parse(src).body
             if isinstance(n, ast.FunctionDef) and n.name in ("gap_forward", "gap_backward")]
    code = "\n\n\n".join(funcs).replace("get_xp()", "np").replace(": GapCache", "")  # importable
    # renamed, so that the correct functions of the same file are the ones graded
    return code.replace("def gap_forward(", "def copied_gap_forward(").replace("def gap_backward(",
                                                                             "def copied_gap_backward(")


def test_similarity_flags_copies_not_independent_work():
    assert similarity.similar_functions(CORRECT) == []
    found = similarity.similar_functions(near_copy())
    assert {m.name for m in found} == {"copied_gap_forward", "copied_gap_backward"}
    assert all(m.ratio >= similarity.THRESHOLD and m.reference.startswith("functional/pooling.py:") for m in found)
    # comments and docstrings do not count; a short function never counts
    assert similarity.tokens('def f(x):\n    """doc"""\n    # hi\n    return x\n') == \
        ("def", "f", "(", "x", ")", ":", "return", "x")
    assert similarity.similar_functions("def f(ds, s):\n    return ds * s * (1 - s)\n", threshold=0.0) == []
    assert similarity.similarity_note(CORRECT) is None
    assert "token similarity >= 0.90" in similarity.similarity_note(near_copy())


def test_grade_prints_the_note_for_the_teacher(tmp_path):
    (tmp_path / "copy.py").write_text(CORRECT + "\n\n" + near_copy())
    (tmp_path / "own.py").write_text(CORRECT)
    r = _cli("grade", str(tmp_path / "copy.py"), "--timeout", "2")
    assert r.exit_code == 0 and "100 / 100" in r.output and "near-copies of eca-ref's reference" in r.output
    r = _cli("grade", str(tmp_path), "--timeout", "2")
    assert r.exit_code == 0 and "note: copy.py: similarity" in r.output and "own.py: similarity" not in r.output
