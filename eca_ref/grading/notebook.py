"""Notebooks: the starter as ``eca_assignment.ipynb``, and a submitted .ipynb as Python source.

    starter_notebook(starter_source())   # the handout's notebook text (needs nbformat)
    notebook_to_source(data, "alice.ipynb")  # the code the grader runs (standard library only)

Writing a notebook uses nbformat (the ``[notebook]`` extra: ``pip install 'eca-ref[notebook]'``).
Reading one for grading needs nothing beyond the standard library, so the grader (and the
Gradescope autograder) accepts notebooks without the extra: only code cells are kept, each under a
``# --- cell N ---`` comment; IPython line magics (``%time ...``) and shell lines (``!pip ...``)
become ``pass``, and a cell that starts with a cell magic (``%%time``, ``%%bash``) is left out
whole, since its body need not be Python.
"""
from __future__ import annotations

import ast
import json
import re

from eca_ref.errors import InputError

NOTEBOOK_SUFFIX = ".ipynb"
SUBMISSION_SUFFIXES = (".py", NOTEBOOK_SUFFIX)
HEADING = re.compile(r"^# [-=]{5,} (.+)$")
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def _nbformat():
    """nbformat, or an InputError that says how to install it."""
    try:
        import nbformat
    except ImportError:
        raise InputError("notebooks need nbformat: pip install 'eca-ref[notebook]' "
                         "(or pip install nbformat)") from None
    return nbformat


# ------------------------------------------------------------------ starter -> notebook
def starter_cells(source: str) -> list:
    """[(kind, text)] of the starter, kind "markdown" or "code", in file order.

    The module docstring becomes the first markdown cell; each ``# ---- NAME`` or ``# ==== NAME``
    banner a "## NAME" heading, with the comment lines right under it as its text; each public
    function and each ``if`` block (the ``__main__`` call of the self-check) its own code cell;
    imports, constants and private helpers join the code cell before them.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    cells = []
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        doc = ast.get_docstring(tree) or ""
        title, _, rest = doc.partition("\n")
        cells.append(("markdown", f"# {title.strip()}\n\n{rest.strip()}".rstrip()))
        start, body = body[0].end_lineno, body[1:]
    else:
        start = 0
    current = None
    for node in body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        chunk = lines[start:first - 1]
        code = lines[first - 1:node.end_lineno]
        start = node.end_lineno
        lead, i = [], 0
        while i < len(chunk):
            m = HEADING.match(chunk[i])
            i += 1
            if not m:
                lead.append(chunk[i - 1])
                continue
            notes = []
            while i < len(chunk) and chunk[i].startswith("#"):
                notes.append(chunk[i].lstrip("#").strip())
                i += 1
            cells.append(("markdown", f"## {m.group(1).strip()}" + ("\n\n" + " ".join(notes) if notes else "")))
            lead, current = [], None
        new_cell = isinstance(node, ast.If) or (isinstance(node, ast.FunctionDef) and not node.name.startswith("_"))
        if current is None or new_cell:
            cells.append(("code", "\n".join(lead + code).strip("\n")))
            current = len(cells) - 1
        else:  # the lines in between as they are
            cells[current] = ("code", "\n".join([cells[current][1]] + lead + code).rstrip("\n"))
    return cells


def starter_notebook(source: str) -> str:
    """The text of ``eca_assignment.ipynb``: the starter's cells as an nbformat 4 notebook."""
    nbf = _nbformat()
    new = {"markdown": nbf.v4.new_markdown_cell, "code": nbf.v4.new_code_cell}
    nb = nbf.v4.new_notebook(cells=[new[kind](text) for kind, text in starter_cells(source)],
                             metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    nbf.validate(nb)
    return nbf.writes(nb)


# ------------------------------------------------------------------ notebook -> source
def _cell_text(cell) -> str:
    src = cell.get("source", cell.get("input", ""))
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    if not isinstance(src, str):
        raise InputError("a cell's source is neither text nor a list of lines")
    return src


def _code_cells(nb) -> list:
    if not isinstance(nb, dict):
        raise InputError("not a notebook (the JSON is not an object)")
    if isinstance(nb.get("cells"), list):                     # nbformat 4
        cells = nb["cells"]
    elif isinstance(nb.get("worksheets"), list):              # nbformat 3
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) for c in ws.get("cells", [])]
    else:
        raise InputError("not a notebook (no cells)")
    return [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]


def _strip_ipython(text: str) -> str:
    """Line magics and shell lines become ``pass`` (same indentation), so blocks stay blocks."""
    out = []
    for line in text.splitlines():
        body = line.lstrip()
        if body.startswith(("%", "!")):
            indent = line[:len(line) - len(body)]
            out.append(f"{indent}pass  # ignored by the grader: {body[:60]}")
        else:
            out.append(line)
    return "\n".join(out)


def notebook_to_source(data: bytes, name: str = "notebook") -> bytes:
    """The Python source the grader runs for a notebook's bytes; InputError (one line) if unreadable."""
    try:
        nb = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"cannot read notebook {name}: it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot read notebook {name}: not valid notebook JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}); open it in Jupyter and save it again") from None
    try:
        cells = _code_cells(nb)
        parts = []
        for i, cell in enumerate(cells, 1):
            text = _cell_text(cell)
            if text.lstrip().startswith("%%"):
                magic = text.lstrip().splitlines()[0][:60]
                parts.append(f"# --- cell {i}: left out by the grader (cell magic {magic}) ---")
                continue
            parts.append(f"# --- cell {i} ---\n{_strip_ipython(text)}")
    except InputError as exc:
        raise InputError(f"cannot read notebook {name}: {exc}") from None
    return ("\n\n".join(parts) + "\n").encode("utf-8")


def submission_source(path, data: bytes) -> bytes:
    """The source to grade of a submitted file: a .py as it is, a notebook's code cells as Python."""
    path_name = getattr(path, "name", str(path))
    if str(path_name).lower().endswith(NOTEBOOK_SUFFIX):
        return notebook_to_source(data, path_name)
    return data
