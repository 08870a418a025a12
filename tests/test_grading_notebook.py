"""Notebook handouts (``eca-ref assignment init --notebook``) and .ipynb submissions to ``eca-ref grade``.

Reading a notebook for grading needs only the standard library (those tests always run); writing
one needs nbformat, the [notebook] extra (those tests skip without it).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from eca_ref.cli import main
from eca_ref.cli_grade import COMMANDS
from eca_ref.errors import InputError
from eca_ref.grading import grade_folder, grade_submission, starter_source
from eca_ref.grading import notebook as nbmod

for _cmd in COMMANDS:
    if _cmd.name not in main.commands:
        main.add_command(_cmd)

FIXTURES = Path(__file__).with_name("grading_fixtures")
CORRECT = (FIXTURES / "correct.py").read_text()
FAST = ["--timeout", "2", "--memory", "512"]


def _cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _functions(source: str) -> dict:
    """{name: docstring} of the top-level functions of some Python source."""
    return {n.name: ast.get_docstring(n) for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def _v4(cells) -> bytes:
    """A minimal nbformat-4 notebook (plain JSON, for the reader's tests that must run without nbformat)."""
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                       "cells": [{"cell_type": kind, "metadata": {}, "source": src,
                                  **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                                 for kind, src in cells]}).encode()


# ------------------------------------------------------------------ reading (standard library only)
def test_notebook_to_source_keeps_code_cells_and_drops_magics():
    data = _v4([("markdown", "# title\nnot code"),
                ("code", ["import numpy as np\n", "%matplotlib inline\n", "!pip install numpy\n"]),
                ("code", "%%bash\necho this is not python"),
                ("code", "if True:\n    %time x = 1\n    y = 2\n"),
                ("raw", "raw text")])
    src = nbmod.notebook_to_source(data, "a.ipynb").decode()
    compile(src, "a.ipynb", "exec")
    assert "not code" not in src and "raw text" not in src and "echo" not in src
    assert "import numpy as np" in src and "    pass  # ignored by the grader: %time x = 1" in src
    assert "# --- cell 1 ---" in src and "left out by the grader (cell magic %%bash)" in src
    ns = {}
    exec(src, ns)
    assert ns["y"] == 2


def test_notebook_format_3_is_read_too():
    data = json.dumps({"nbformat": 3, "worksheets": [{"cells": [
        {"cell_type": "code", "input": ["def f():\n", "    return 3\n"]},
        {"cell_type": "markdown", "source": "text"}]}]}).encode()
    ns = {}
    exec(nbmod.notebook_to_source(data), ns)
    assert ns["f"]() == 3


@pytest.mark.parametrize("data, words", [
    (b'{"cells": [', "not valid notebook JSON"),
    (b"\xff\xfe\x00junk", "not UTF-8"),
    (b"[1, 2]", "not an object"),
    (b'{"metadata": {}}', "no cells"),
    (b'{"cells": [{"cell_type": "code", "source": 5}]}', "neither text nor a list"),
])
def test_a_broken_notebook_is_one_clear_line(tmp_path, data, words):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        grade_submission(path)
    msg = str(err.value)
    assert msg.startswith("cannot read notebook bad.ipynb") and words in msg and "\n" not in msg
    r = _cli("grade", str(path))
    assert r.exit_code == 2 and "cannot read notebook" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_solved_notebook_scores_full_marks_alone_and_in_a_folder(tmp_path):
    cells = [("markdown", "# my solution")] + [("code", chunk) for chunk in CORRECT.split("\n\n\n")]
    cells.insert(2, ("code", "%load_ext autoreload\n!nvidia-smi"))
    cells.append(("code", "%%timeit\ngap_forward(np.ones((1, 1, 2, 2)))"))
    (tmp_path / "alice.ipynb").write_bytes(_v4(cells))
    result = grade_submission(tmp_path / "alice.ipynb", timeout=2, memory_mb=512)
    assert (result.score, result.status, result.starter_version) == (100, "graded", "1.0"), result.notes
    assert result.submission == "alice.ipynb"
    (tmp_path / "bob.py").write_text(CORRECT)
    (tmp_path / "notes.txt").write_text("not a submission")
    results = grade_folder(tmp_path, timeout=2, memory_mb=512)
    assert [(r.submission, r.score) for r in results] == [("alice.ipynb", 100), ("bob.py", 100)]


# ------------------------------------------------------------------ writing (nbformat)
def test_init_notebook_writes_the_starter_as_cells(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    r = _cli("assignment", "init", str(tmp_path), "--notebook")
    assert r.exit_code == 0, r.output
    assert "eca_assignment.ipynb" in r.output and "last cell" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "eca_assignment.ipynb"]
    nb = nbformat.read(tmp_path / "eca_assignment.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    # the same functions with the same docstrings; one public function per cell
    assert _functions("\n\n".join(code)) == _functions(starter_source())
    for name in ("gap_forward", "eca_backward", "kernel_size"):
        assert sum(f"def {name}(" in c for c in code) == 1
        assert [c for c in code if f"def {name}(" in c][0].startswith(f"def {name}(")
    assert code[-1] == 'if __name__ == "__main__":\n    _self_check()'  # the self-check is the last cell
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
    assert headings[0].startswith("# ECA-Net assignment") and "## check yourself" in headings
    readme = (tmp_path / "README.md").read_text()
    assert "eca_assignment.ipynb" in readme and "magics" in readme
    r = _cli("assignment", "init", str(tmp_path), "--notebook")
    assert r.exit_code == 2 and "already exist" in r.output


def test_the_handout_notebook_solved_checks_itself_and_scores_full_marks(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    _cli("assignment", "init", str(tmp_path), "--notebook")
    path = tmp_path / "eca_assignment.ipynb"
    nb = nbformat.read(path, as_version=4)
    # unsolved: the notebook's code, run as a script (as Jupyter runs it: __name__ == "__main__")
    script = tmp_path / "as_script.py"
    script.write_bytes(nbmod.notebook_to_source(path.read_bytes()))
    res = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "not implemented yet" in res.stdout, res.stderr
    # solved: a cell with the answers just before the self-check
    at = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## check yourself"))
    nb.cells.insert(at, nbformat.v4.new_code_cell(CORRECT.split('"""', 2)[2]))
    nbformat.write(nb, path)
    script.write_bytes(nbmod.notebook_to_source(path.read_bytes()))
    res = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.stdout.rstrip().endswith("all checks ok"), res.stdout + res.stderr
    r = _cli("grade", str(path), *FAST)
    assert r.exit_code == 0 and "100 / 100" in r.output, r.output


def test_writing_a_notebook_without_nbformat_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbformat", None)   # import nbformat -> ImportError
    with pytest.raises(InputError, match=r"pip install 'eca-ref\[notebook\]'"):
        nbmod.starter_notebook(starter_source())
    r = _cli("assignment", "init", str(tmp_path / "h"), "--notebook")
    assert r.exit_code == 2 and "eca-ref[notebook]" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "h").exists() or not any((tmp_path / "h").iterdir())
