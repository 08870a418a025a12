"""The students' starter: ``eca-ref assignment init DIR`` writes it.

Two files: ``eca_assignment.py`` (the functions to implement, with the
reference's docstrings and NotImplementedError bodies, plus a self-check) and
``README.md`` (what to do, how to check yourself). With ``--notebook``,
``eca_assignment.ipynb`` instead of the .py: the same code, one cell per
function, the self-check as the last cell (:mod:`eca_ref.grading.notebook`). The interface they define is
versioned by :data:`STARTER_VERSION` and documented in docs/grading-students.md;
the grader checks exactly these names and signatures.
"""
from __future__ import annotations

from pathlib import Path

from eca_ref.errors import InputError
from eca_ref.grading.notebook import starter_notebook
from eca_ref.grading.report import atomic_write_text
from eca_ref.grading.rubric import DEFAULT_RUBRIC

STARTER_VERSION = "1.0"
TEMPLATE = Path(__file__).with_name("starter_template.py")
STARTER_FILE = "eca_assignment.py"
NOTEBOOK_FILE = "eca_assignment.ipynb"
README_FILE = "README.md"

STUDENT_README = """\
# ECA-Net assignment (starter {version})

Implement, in plain NumPy, the functions in `{file}`:

| function | returns | points |
|---|---|---|
{points}

Rules: keep the names and signatures; use NumPy and the Python standard library only (no
eca_ref, no PyTorch, no autograd); return NumPy float64 arrays, not lists; do not print much,
do not call `sys.exit`/`os._exit`, and keep your file free of top-level work other than
definitions. Each test has a time limit of a few seconds.{notebook_note}

## Check yourself before you submit

{run} runs gradient checks of each backward against central differences of your own forward and
compares `eca_forward` with `eca_band_forward`. Every line should say `ok`. If the grader is
installed (ask your teacher how), `eca-ref grade {file}` gives the score and the
report your teacher will see (your teacher may use another random seed).

## How it is graded

Each function is run on fresh random float64 inputs of several shapes (N = 1, C < k, odd and
even C, k = 1) and compared with the reference; backward passes are also checked against
central differences of your own forward. A right forward pass earns its points even if the
backward is wrong, and each case counts separately.

Hints: x reaches the output of ECA and SE along two paths (the rescale and the gate), so the
backward must add both; the 1D convolution of ECA is a cross-correlation (not a flipped
kernel) with zero padding; GAP's backward divides by H * W.
"""

NOTEBOOK_NOTE = """

The grader runs the notebook's code cells in order, as one file: markdown cells, outputs, IPython
magics (`%time`, a cell that starts with `%%`) and shell lines (`!pip ...`) are ignored. Keep the
last cell's `if __name__ == "__main__":` line, so the self-check does not run while you are graded."""

_RETURNS = {
    "kernel_size": "k (int)", "gap_forward": "(y, cache)", "gap_backward": "dx",
    "sigmoid_forward": "(s, cache)", "sigmoid_backward": "dz", "eca_forward": "(out, cache)",
    "eca_backward": "(dx, dw)", "eca_band_forward": "(out, cache)", "se_forward": "(out, cache)",
    "se_backward": "(dx, dw1, dw2)",
}


def starter_source() -> str:
    """The text of the student's ``eca_assignment.py``."""
    return TEMPLATE.read_text(encoding="utf-8")


def student_readme(rubric=None, notebook: bool = False) -> str:
    rubric = DEFAULT_RUBRIC if rubric is None else rubric
    run = "Running the notebook to its last cell (Run All)" if notebook else "`python eca_assignment.py`"
    rows = []
    for e in rubric:
        what = f"`{e.name}`" if e.name in _RETURNS else e.description
        ret = _RETURNS.get(e.name, "gradient check")
        rows.append(f"| {what} | {ret} | {e.points} |")
    return STUDENT_README.format(version=STARTER_VERSION, points="\n".join(rows), run=run,
                                 file=NOTEBOOK_FILE if notebook else STARTER_FILE,
                                 notebook_note=NOTEBOOK_NOTE if notebook else "")


def init_assignment(directory, *, force: bool = False, notebook: bool = False) -> list:
    """Write the starter into ``directory`` (created if missing); returns the paths written.

    ``notebook``: write ``eca_assignment.ipynb`` (needs nbformat) instead of ``eca_assignment.py``.
    Existing files are never overwritten unless ``force``; every file is written
    atomically.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"not a folder: {directory}")
    if notebook:
        files = {NOTEBOOK_FILE: starter_notebook(starter_source()), README_FILE: student_readme(notebook=True)}
    else:
        files = {STARTER_FILE: starter_source(), README_FILE: student_readme()}
    existing = [name for name in files if (directory / name).exists()]
    if existing and not force:
        raise InputError(f"{', '.join(str(directory / n) for n in existing)} already exist"
                         f"{'s' if len(existing) == 1 else ''}; pass --force to overwrite")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create folder {directory}: {exc.strerror or exc}") from None
    written = []
    for name, text in files.items():
        atomic_write_text(directory / name, text)
        written.append(directory / name)
    return written
