"""Hostile submissions: each scores only what it honestly earns and leaves no trace.

"No trace": the grader's files and site-packages are unchanged after grading, and no process of the
submission is alive. What a platform lacks (no namespaces: the none level) is skipped with its reason.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import eca_ref
from eca_ref.cli import main
from eca_ref.cli_grade import COMMANDS
from eca_ref.errors import InputError
from eca_ref.grading import grade_source, grade_submission, sandbox

for _cmd in COMMANDS:
    if _cmd.name not in main.commands:
        main.add_command(_cmd)

FIXTURES = Path(__file__).with_name("grading_fixtures")
HOSTILE = FIXTURES / "hostile"
PKG = Path(eca_ref.__file__).resolve().parent
SITE = Path(np.__file__).resolve().parent.parent
PROT = sandbox.detect()
FAST = dict(timeout=2, memory_mb=512)


def _snapshot():
    """Hashes of the grader's package files and the names in NumPy's site-packages."""
    files = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(PKG.rglob("*.py"))}
    return files, sorted(os.listdir(SITE))


def _alive(marker: str) -> list:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd:
                found.append(pid)
    return found


def _needs(flag: bool, what: str):
    if not flag:
        pytest.skip(f"the {PROT.level} sandbox level here does not provide {what}: {'; '.join(PROT.notes)}")


@pytest.fixture
def untouched():
    """Grade inside this fixture; afterwards the grader's files and site-packages are as before."""
    before = _snapshot()
    yield
    assert _snapshot() == before


@pytest.mark.parametrize("name", ["append_grader", "pth_plant"])
def test_writes_to_the_grader_and_site_packages_are_blocked(name, untouched):
    _needs(PROT.hidden_grader or (PROT.drops_user and sandbox.is_root()), "a read-only view or another user")
    r = grade_submission(HOSTILE / f"{name}.py", **FAST)
    assert r.score == 0
    assert "written" not in r.stdout and "ATTEMPT" in r.stdout
    assert not (SITE / "eca_hostile_plant.pth").exists()


def test_copying_the_reference_earns_nothing(tmp_path, monkeypatch, untouched):
    _needs(PROT.hidden_grader, "a view without the grader's files")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "teacher-secret.txt").write_text("exam answers 42")
    r = grade_submission(HOSTILE / "copy_reference.py", **FAST)
    assert r.score == 0 and "ATTEMPT copied: False" in r.stdout
    assert "The grader's answers" not in r.stdout and "exam answers 42" not in r.stdout
    assert "teacher-secret" not in r.stdout and "--json" not in r.stdout


def test_linear_maps_get_no_gradient_check_points():
    """Before: 15 points (the three gradient checks). The forward is wrong, so the checks count nothing."""
    r = grade_submission(HOSTILE / "linear_maps.py", **FAST)
    assert r.score == 0
    gc = next(t for t in r.tests if t.name == "gradcheck_eca")
    assert "gradient-check points count only where the forward pass is right" in gc.output


def test_patching_the_worker_does_not_fake_gradients():
    """Before: 65 (50 earned + 15 faked). The parent takes the differences itself: 50."""
    r = grade_submission(HOSTILE / "patch_worker.py", **FAST)
    by = {t.name: t.score for t in r.tests}
    assert r.score == 50, by
    assert by["gradcheck_gap_sigmoid"] == by["gradcheck_eca"] == by["gradcheck_se"] == 0
    assert by["eca_forward"] == 15 and by["eca_backward"] == 0


def test_forger_cannot_replace_results_after_grading(tmp_path):
    """setsid + double fork, then rewrite results.json every 0.25 s: no process survives grading."""
    _needs(PROT.pid_namespace or PROT.drops_user, "a way to end a process that left the process group")
    exe = shutil.which("eca-ref") or str(Path(sys.executable).with_name("eca-ref"))
    res = subprocess.run([exe, "grade", str(HOSTILE / "forger.py"), "--json", "results.json", "--timeout", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    first = (tmp_path / "results.json").read_text()
    assert json.loads(first)["score"] == 0
    assert not _alive("eca-hostile-forger")
    time.sleep(0.8)
    assert (tmp_path / "results.json").read_text() == first
    assert not _alive("eca-hostile-forger")


def test_the_protections_are_reported(tmp_path):
    r = CliRunner().invoke(main, ["grade", "--sandbox-info"])
    assert r.exit_code == 0 and f"sandbox level: {PROT.level}" in r.output and "runs as:" in r.output
    result = grade_submission(FIXTURES / "correct.py", **FAST)
    assert result.score == 100 and result.sandbox["level"] == PROT.level


def test_the_none_level_still_grades_and_says_what_is_missing():
    prot = sandbox.detect("none")
    assert any("network" in n for n in prot.notes) and not prot.hidden_grader
    assert grade_submission(FIXTURES / "correct.py", sandbox_level="none", **FAST).score == 100


# ------------------------------------------------------------------ (f): arguments and outputs
@pytest.mark.parametrize("seed", [-1, 2 ** 32, 1.5, True])
def test_bad_seeds_are_refused_by_the_api(seed, tmp_path):
    with pytest.raises(InputError, match="seed"):
        grade_source(b"x = 1", "s.py", seed=seed)
    (tmp_path / "a.py").write_text("x = 1")
    with pytest.raises(InputError, match="seed"):
        from eca_ref.grading import grade_folder
        grade_folder(tmp_path, seed=seed)


@pytest.mark.parametrize("flag", ["--json", "--csv"])
def test_an_output_never_overwrites_a_submission(tmp_path, flag):
    sub = tmp_path / "alice.py"
    sub.write_text((FIXTURES / "correct.py").read_text())
    before = sub.read_bytes()
    target = str(sub) if flag == "--json" else str(sub)
    args = ["grade", str(sub if flag == "--json" else tmp_path), flag, target]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "refusing to write" in r.output, r.output
    assert sub.read_bytes() == before


def test_formula_names_are_neutralised_and_dangling_links_get_a_row(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    evil = '=HYPERLINK("evil.example","click").py'
    (folder / evil).write_text("STARTER_VERSION = '1.0'\n")
    (folder / "gone.py").symlink_to(tmp_path / "nowhere.py")
    reports = tmp_path / "reports"
    r = CliRunner().invoke(main, ["grade", str(folder), "--report-dir", str(reports), "--timeout", "2"])
    assert r.exit_code == 0, r.output
    rows = list(csv.reader((folder / "grades.csv").open()))
    files = [row[0] for row in rows[1:]]
    assert "'" + evil in files and "gone.py" in files
    gone = next(row for row in rows[1:] if row[0] == "gone.py")
    assert gone[3] == "unreadable"
    assert f"and 2 reports in {reports}" in r.output.replace("\n", "") and len(list(reports.glob("*.json"))) == 2
    assert "dangling" in json.loads((reports / "gone.json").read_text())["output"]
