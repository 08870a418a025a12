"""MkDocs hook: copy MathJax 3 into the built site, so that equations render offline.

MathJax comes from the ``django-static-mathjax`` wheel (a plain copy of MathJax's ``es5`` build, part of
the ``[docs]`` extra); nothing is fetched at build time or when the site is viewed.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[1]


def mathjax_dir() -> Path:
    """The es5 folder of the installed MathJax (tex-chtml.js, output/chtml/fonts/...)."""
    try:
        import mathjax  # the django-static-mathjax distribution
    except ImportError as exc:  # pragma: no cover - the [docs] extra installs it
        raise SystemExit('MathJax is missing: pip install -e ".[docs]" (django-static-mathjax)') from exc
    es5 = Path(next(iter(mathjax.__path__))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise SystemExit(f"MathJax's tex-chtml.js not found under {es5}")
    return es5


def on_post_build(config, **kwargs):
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    # the TeX input and the CommonHTML output with its fonts; the speech engine (sre) stays out
    shutil.copytree(mathjax_dir(), target, ignore=shutil.ignore_patterns("sre", "*-full*", "*speech*", "node-main.js",
                                                                          "latest.js", "mml-*", "*-svg*", "svg"))


class ExampleSections(griffe.Extension):
    """The package's docstrings title their doctests "Example:"; Google style (griffe) knows "Examples:".
    Without this, the ``>>>`` lines would render as nested block quotes in the API pages."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = re.sub(r"^(\s*)Example:[ \t]*$", r"\1Examples:", obj.docstring.value, flags=re.M)


REPO_LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)#\s]+)\)")


def on_page_markdown(markdown, page, **kwargs):
    """A link from a page to a source file of the repository (``../eca_ref/...``) works on GitHub but has no
    page on the site: show its text and the path instead. A link to a file that does not exist stays as it is,
    so that the strict build still reports it."""
    def repl(m):
        target = (Path(page.file.abs_src_path).parent / m.group(2)).resolve()
        if target.is_file() and ROOT in target.parents and Path(kwargs["config"]["docs_dir"]).resolve() not in target.parents:
            rel = target.relative_to(ROOT).as_posix()
            return m.group(1) if m.group(1).strip("`") == rel else f"{m.group(1)} (`{rel}`)"
        return m.group(0)
    return REPO_LINK.sub(repl, markdown)
