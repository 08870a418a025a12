"""The grade as a rich table, as Gradescope's results.json, and as a CSV of a folder.

Every file is written atomically (a temporary file in the same folder, then
``os.replace``) by the grader after the submission's process has ended, so a
submission can neither leave a half-written file nor have the last word on it.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from eca_ref.errors import InputError
from eca_ref.fileio import atomic_write_text as _atomic_write_text


def atomic_write_text(path, text: str):
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"folder does not exist: {folder}")
    _atomic_write_text(path, text)


# ------------------------------------------------------------------ Gradescope
def gradescope_dict(result) -> dict:
    """Gradescope's autograder results.json: score, max_score, output, tests[name, score, max_score, output]."""
    lines = [f"eca-ref grader: {result.submission}, seed {result.seed}, score {result.score} / {result.max_score}"]
    lines += result.notes
    if result.sandbox:
        sb = result.sandbox
        lines.append(f"sandbox: {sb.get('level')}; runs as {sb.get('user')}; process tree ended by "
                     f"{sb.get('kill_scope')}; grader files hidden: {'yes' if sb.get('grader_files_hidden') else 'no'}"
                     f"; network: {'none' if sb.get('no_network') else 'reachable'}")
    if result.stdout.strip():
        lines += ["", "The submission's standard output:", result.stdout.rstrip()]
    if result.stderr.strip():
        lines += ["", "The submission's standard error:", result.stderr.rstrip()]
    return {
        "score": result.score,
        "max_score": result.max_score,
        "output": "\n".join(lines),
        "stdout_visibility": "visible",
        "tests": [{"name": t.name, "number": str(i + 1), "score": t.score, "max_score": t.max_score,
                   "status": "passed" if t.score == t.max_score else "failed", "output": t.output}
                  for i, t in enumerate(result.tests)],
        "extra_data": {"grader": "eca-ref", "status": result.status, "seed": result.seed,
                       "starter_version": result.starter_version, "sandbox": result.sandbox},
    }


def write_json(result, path):
    atomic_write_text(path, json.dumps(gradescope_dict(result), indent=2) + "\n")


def csv_cell(value):
    """A cell a spreadsheet shows as text: one starting with = + - @ (or a tab / CR) gets a leading '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(results, path, rubric):
    """One row per submission: file, score, max_score, status, then each rubric entry's score.

    Text cells are neutralised against formula injection (a file named ``=HYPERLINK(...).py``).
    """
    names = [e.name for e in rubric]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "score", "max_score", "status"] + names)
    for r in results:
        by_name = {t.name: t.score for t in r.tests}
        w.writerow([csv_cell(v) for v in [r.submission, r.score, r.max_score, r.status]
                    + [by_name.get(n, 0) for n in names]])
    atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------ the terminal
def result_table(result):
    """A rich Table: test, points, passed, the measured error or the first failure."""
    table = Table(title=Text(f"{result.submission}: {result.score} / {result.max_score} points"),
                  title_justify="left")
    table.add_column("test")
    table.add_column("points", justify="right")
    table.add_column("passed", justify="center")
    table.add_column("error or first failure", overflow="fold")
    for t in result.tests:
        mark = "yes" if t.passed == t.total and t.total else ("no" if t.passed == 0 else f"{t.passed}/{t.total}")
        style = "green" if mark == "yes" else ("red" if mark == "no" else "yellow")
        table.add_row(t.name, f"{t.score}/{t.max_score}", Text(mark, style=style), Text(t.summary))
    table.add_section()
    table.add_row("total", f"{result.score}/{result.max_score}", "", result.status)
    return table


def folder_table(results):
    table = Table(title="grades", title_justify="left")
    table.add_column("file")
    table.add_column("score", justify="right")
    table.add_column("status")
    table.add_column("note", overflow="fold")
    for r in results:
        note = r.notes[-1] if r.status != "graded" and r.notes else ""
        table.add_row(Text(r.submission), f"{r.score}/{r.max_score}", r.status, Text(note))
    return table
