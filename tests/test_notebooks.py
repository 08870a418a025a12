"""The chapters as Jupyter notebooks (docs/notebooks/, made by ``python docs/notebooks.py`` with jupytext).

1. Every chapter with code has its notebook, and each notebook is exactly what its chapter gives now
   (so the two copies cannot drift: the Markdown is the source).
2. Every notebook executes in a real Python kernel (nbclient + ipykernel), and each code cell prints what
   the chapter's ```output block shows.

Needs the [docs] extra (jupytext, nbclient, ipykernel); skipped without it. CI installs it.
"""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def nbgen():
    pytest.importorskip("jupytext")
    sys.path.insert(0, str(DOCS))
    try:
        return importlib.import_module("notebooks")
    finally:
        sys.path.remove(str(DOCS))


def _chapter_ids():
    return [p.stem for p in sorted(DOCS.glob("[0-9][0-9]-*.md")) if "```python" in p.read_text(encoding="utf-8")]


def test_every_chapter_with_code_has_its_notebook_and_nothing_else(nbgen):
    pages = nbgen.chapters()
    assert [p.stem for p in pages] == _chapter_ids() and len(pages) >= 9
    on_disk = sorted(p.stem for p in (DOCS / "notebooks").glob("*.ipynb"))
    assert on_disk == [p.stem for p in pages], "run: python docs/notebooks.py"


@pytest.mark.parametrize("stem", _chapter_ids())
def test_notebook_matches_its_chapter(nbgen, stem):
    page = DOCS / f"{stem}.md"
    fresh = nbgen.to_notebook_text(page)
    on_disk = nbgen.notebook_path(page).read_text(encoding="utf-8")
    assert on_disk == fresh, f"docs/notebooks/{stem}.ipynb differs from docs/{stem}.md: run python docs/notebooks.py"


def test_conversion_rules(nbgen, tmp_path):
    """python -> code cell; its ```output -> dropped; links and images relative to docs/notebooks/."""
    text = ("# 0. T\n\nSee [x](paper.md#a) and ![f](figures/a.png), not [y](https://e.org).\n\n"
            "```python\nprint(1)\n```\n\n```output\n1\n```\n\n```console\n$ eca-ref verify\n```\n")
    assert "```output" not in nbgen.strip_output_blocks(text)
    assert "```console" in nbgen.strip_output_blocks(text)
    rel = nbgen.relink(text)
    assert "(../paper.md#a)" in rel and "(../figures/a.png)" in rel and "(https://e.org)" in rel
    page = tmp_path / "00-t.md"
    page.write_text(text)
    import nbformat
    nb = nbformat.reads(nbgen.to_notebook_text(page), as_version=4)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds == ["markdown", "code", "markdown"] and nb.cells[1].source == "print(1)"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def _expected_outputs(page: Path) -> list:
    """For each python block of the chapter, in order: the ```output text that follows it, or None."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_docs import python_blocks
    finally:
        sys.path.remove(str(ROOT / "tests"))
    return [expected for _, expected, _ in python_blocks(page.read_text(encoding="utf-8"))]


def _clean(s: str) -> str:
    return "\n".join(line.rstrip() for line in s.rstrip().splitlines())


@pytest.mark.parametrize("stem", _chapter_ids())
def test_notebook_executes_and_prints_what_the_chapter_shows(nbgen, stem):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(DOCS / "notebooks" / f"{stem}.ipynb"), as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    expected = _expected_outputs(DOCS / f"{stem}.md")
    assert len(code) == len(expected)
    for i, (cell, want) in enumerate(zip(code, expected)):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{stem}, cell {i}: {errors[0].ename}: {errors[0].evalue}"
        printed = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
        if want is not None:
            assert _clean(printed) == _clean(want), f"{stem}, code cell {i} printed:\n{printed}\nthe chapter shows:\n{want}"
