"""The docs as a static site (mkdocs.yml, MkDocs + Material, MathJax copied in by docs/mkdocs_hooks.py).

The site builds in strict mode (a broken link, a missing page or an unparsable docstring fails), every
chapter is in the navigation in chapter order, no page loads a script or a style from the network (the
math renders offline), the figures, the notebooks and the API pages (the docstrings of eca_ref.functional,
eca_ref.attention and eca_ref.models) are there. With Chromium installed, a real browser renders the
equations of chapter 3 (docs/screenshot.py's DOM check).

Needs the [docs] extra; skipped without it. CI installs it.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mathjax")  # django-static-mathjax
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    return out


def test_every_page_is_built(site):
    for page in DOCS.glob("*.md"):
        assert (site / f"{page.stem}.html").is_file(), f"{page.name} has no page in the site"
    for api in ("functional", "attention", "models"):
        assert (site / "api" / f"{api}.html").is_file()
    assert (site / "search" / "search_index.json").is_file(), "the search plugin wrote no index"


def test_navigation_lists_the_chapters_in_order(site):
    html = (site / "index.html").read_text(encoding="utf-8")
    chapters = sorted(p.stem for p in DOCS.glob("[0-9][0-9]-*.md"))
    positions = [html.find(f'href="{stem}.html"') for stem in chapters]
    assert all(p >= 0 for p in positions), "a chapter is missing from the navigation"
    assert positions == sorted(positions), "the navigation does not list the chapters in order"


def test_no_page_loads_anything_from_the_network(site):
    remote = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"', re.I)
    for page in site.rglob("*.html"):
        found = remote.findall(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(site)} loads {found[0]}"


def test_math_is_marked_and_mathjax_is_in_the_site(site):
    html = (site / "03-local-cross-channel-interaction.html").read_text(encoding="utf-8")
    assert html.count('class="arithmatex"') > 20
    assert 'src="assets/mathjax/tex-chtml.js"' in html and 'src="javascripts/mathjax-config.js"' in html
    assert (site / "assets" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000
    assert list((site / "assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert "$" not in re.sub(r"<(code|pre|script)\b.*?</\1>", "", html, flags=re.S), "a $ of TeX is left raw"


def test_figures_and_notebooks_are_in_the_site(site):
    for png in (DOCS / "figures").glob("*.png"):
        assert (site / "figures" / png.name).is_file()
    assert 'src="figures/band-matrices.png"' in (site / "03-local-cross-channel-interaction.html").read_text()
    for nb in (DOCS / "notebooks").glob("*.ipynb"):
        assert (site / "notebooks" / nb.name).is_file()
    assert not list(site.glob("*.py")), "docs/*.py scripts must not be published"


def test_api_pages_show_the_docstrings(site):
    from eca_ref.attention import band_matrix
    from eca_ref.functional.pooling import gap_forward

    functional = (site / "api" / "functional.html").read_text(encoding="utf-8")
    attention = (site / "api" / "attention.html").read_text(encoding="utf-8")
    models = (site / "api" / "models.html").read_text(encoding="utf-8")
    assert gap_forward.__doc__.splitlines()[0] in functional
    assert "band_matrix" in attention and band_matrix.__doc__.split("``")[0].strip() in attention
    assert "resnet_forward" in models and "network_params" in models
    for html in (functional, attention):
        assert "<blockquote>" not in html, "a doctest rendered as a block quote (the Example: section)"


@pytest.mark.slow
def test_a_real_browser_renders_the_equations(tmp_path):
    """docs/screenshot.py in headless Chromium: the equations of chapter 3 become MathJax output."""
    sys.path.insert(0, str(DOCS))
    try:
        import screenshot
    finally:
        sys.path.remove(str(DOCS))
    if screenshot.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    pytest.importorskip("mkdocs")
    out = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(DOCS / "screenshot.py"), "--out", str(out), "--height", "600"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 left as TeX" in proc.stdout and "remote scripts/styles none" in proc.stdout
    assert int(re.search(r"(\d+) equations rendered", proc.stdout).group(1)) > 20
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_screenshot_says_when_chromium_is_missing(monkeypatch, capsys):
    sys.path.insert(0, str(DOCS))
    try:
        import screenshot
    finally:
        sys.path.remove(str(DOCS))
    monkeypatch.setattr(screenshot.shutil, "which", lambda name: None)
    assert screenshot.main(["--out", "unused.png"]) == 2
    err = capsys.readouterr().err
    assert "Chromium is missing" in err and "apt-get install" in err
