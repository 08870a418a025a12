"""Make a Jupyter notebook of every chapter that has code, from the chapter's Markdown, with jupytext.

    python docs/notebooks.py            # (re)write docs/notebooks/NN-*.ipynb
    python docs/notebooks.py --check    # exit 1 when a notebook differs from what its chapter gives now

The chapter (docs/NN-*.md) is the only source: the notebooks are generated, never edited by hand, and
tests/test_notebooks.py checks that they match and that they execute. A chapter becomes a notebook by:

* each ```python block -> a code cell (jupytext's Markdown reader);
* each ```output block that shows what the python block above prints -> dropped: running the cell prints it;
* everything else (text, equations, ```console blocks) -> Markdown cells, with the links and the images
  made relative to docs/notebooks/ (``figures/x.png`` -> ``../figures/x.png``).

The notebooks are saved without outputs, with a Python 3 kernel; open them from docs/notebooks/ (or
anywhere: the code only needs ``eca_ref`` importable).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "notebooks"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$\n?", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"(\]\()(?!https?://|#|/)([^)\s]+)(\))")
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def chapters() -> list[Path]:
    """docs/NN-*.md pages that have at least one ```python block."""
    return [p for p in sorted(DOCS.glob("[0-9][0-9]-*.md"))
            if any(m.group("info").strip() == "python" for m in FENCE.finditer(p.read_text(encoding="utf-8")))]


def notebook_path(page: Path) -> Path:
    return OUT / (page.stem + ".ipynb")


def strip_output_blocks(text: str) -> str:
    """Drop each ```output block that directly follows a ```python block (the tests' pairing rule)."""
    found = list(FENCE.finditer(text))
    pieces, pos = [], 0
    for prev, m in zip(found, found[1:]):
        if (m.group("info").strip() == "output" and prev.group("info").strip() == "python"
                and not text[prev.end():m.start()].strip()):
            pieces.append(text[pos:prev.end()])
            pos = m.end()
    pieces.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(pieces))


def relink(text: str) -> str:
    """Relative links and images of a docs/ page, seen from docs/notebooks/."""
    return LINK.sub(lambda m: f"{m.group(1)}../{m.group(2)}{m.group(3)}", text)


def to_notebook_text(page: Path) -> str:
    """The .ipynb text (JSON) for one chapter."""
    import jupytext
    import nbformat

    md = relink(strip_output_blocks(page.read_text(encoding="utf-8")))
    nb = jupytext.reads(md, fmt="md")
    nb.metadata = {"kernelspec": dict(KERNEL),
                   "language_info": {"name": "python"},
                   "eca_ref": {"source": f"docs/{page.name}",
                               "generated_by": "python docs/notebooks.py (do not edit: edit the chapter)"}}
    for i, cell in enumerate(nb.cells):
        cell.metadata = {}
        cell["id"] = f"{page.stem[:2]}-{i:03d}"  # stable ids: the same chapter gives the same file
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a notebook is missing or out of date")
    opts = ap.parse_args(argv)
    try:
        import jupytext  # noqa: F401
    except ImportError:
        print('docs/notebooks.py needs jupytext: pip install -e ".[docs]"', file=sys.stderr)
        return 2
    pages = chapters()
    expected = {notebook_path(p) for p in pages}
    stale = []
    for page in pages:
        path, text = notebook_path(page), to_notebook_text(page)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if not opts.check:
                OUT.mkdir(exist_ok=True)
                path.write_text(text, encoding="utf-8", newline="\n")
                print(f"wrote {path.relative_to(DOCS.parent)}")
    extra = sorted(set(OUT.glob("*.ipynb")) - expected)
    if opts.check:
        for path in stale:
            print(f"{path.relative_to(DOCS.parent)} is missing or differs from its chapter", file=sys.stderr)
        for path in extra:
            print(f"{path.relative_to(DOCS.parent)} has no chapter with code", file=sys.stderr)
        if stale or extra:
            print("run: python docs/notebooks.py", file=sys.stderr)
            return 1
        print(f"ok: {len(pages)} notebook(s) match their chapters")
        return 0
    for path in extra:
        path.unlink()
        print(f"removed {path.relative_to(DOCS.parent)} (no chapter with code)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
