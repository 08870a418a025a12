"""The docs cannot drift from the code.

1. Every fenced ```python block of each docs/*.md page runs, in page order, in one
   namespace per page. Where a ```output block follows a python block (only blank
   lines between), the text the python block prints must equal it (trailing
   spaces and trailing blank lines ignored).
2. The doctest examples in eca_ref's docstrings run (one test per module that has any).
3. ``python docs/gen.py --check``: the CLI output shown in the docs is what the
   commands print now.
4. docs/figures.py makes its PNGs (skipped without matplotlib, the [plot] extra).
"""
from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import eca_ref

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(text: str):
    """(info, body, line) of each fenced block; line is 1-based, for error messages."""
    return [(m.group("info").strip(), m.group("body"), text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def python_blocks(text: str):
    """(code, expected output or None, line) for each python block, pairing a directly following output block."""
    found = list(FENCE.finditer(text))
    out = []
    for i, m in enumerate(found):
        if m.group("info").strip() != "python":
            continue
        expected = None
        if i + 1 < len(found):
            nxt = found[i + 1]
            between = text[m.end():nxt.start()]
            if nxt.group("info").strip() == "output" and not between.strip():
                expected = nxt.group("body")
        out.append((m.group("body"), expected, text.count("\n", 0, m.start()) + 1))
    return out


def _clean(s: str) -> str:
    return "\n".join(line.rstrip() for line in s.rstrip().splitlines())


def test_docs_exist_and_are_linked():
    assert PAGES, "docs/*.md is empty"
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in PAGES:
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
    for page in PAGES:  # every relative link and image points to a file that exists
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (DOCS / target).exists(), f"{page.name} links to missing {target}"


CHAPTERS = [p for p in PAGES if re.match(r"\d\d-", p.name)]
GEN_SPAN = re.compile(r"<!-- gen(?:\(data\))?: .+? -->\n.*?<!-- /gen -->", re.DOTALL)


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_chapter_shape(page):
    """A chapter ends with "What to remember" in three lines at most; command output is generated."""
    text = page.read_text(encoding="utf-8")
    assert re.match(r"# \d+\. ", text), f"{page.name} must open with '# N. Title'"
    tail = text.rsplit("\n## ", 1)[-1]
    assert tail.startswith("What to remember\n"), f"{page.name} must end with a '## What to remember' section"
    lines = [line for line in tail.splitlines()[1:] if line.strip()]
    assert 1 <= len(lines) <= 3, f"{page.name}: 'What to remember' has {len(lines)} lines, at most 3 allowed"
    spans = [m.span() for m in GEN_SPAN.finditer(text)]
    for m in FENCE.finditer(text):
        body = m.group("body").splitlines()
        shows_output = body and body[0].startswith("$ eca-ref") and any(not x.startswith("$") for x in body[1:])
        if shows_output:
            assert any(a <= m.start() and m.end() <= b for a, b in spans), (
                f"{page.name}: output of '{body[0]}' is typed in; put it between <!-- gen: ... --> markers "
                f"and run python docs/gen.py")


def test_every_output_block_follows_a_python_block():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        paired = sum(1 for _, expected, _ in python_blocks(text) if expected is not None)
        n_output = sum(1 for info, _, _ in blocks(text) if info == "output")
        assert paired == n_output, f"{page.name}: an ```output block does not directly follow a ```python block"


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p.read_text(encoding="utf-8"))],
                         ids=lambda p: p.name)
def test_page_code_runs_and_prints_what_it_shows(page):
    namespace = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for code, expected, line in python_blocks(page.read_text(encoding="utf-8")):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
            except Exception as exc:  # the page and the line say where
                pytest.fail(f"{page.name}, block at line {line} raised {type(exc).__name__}: {exc}")
        if expected is not None:
            assert _clean(buf.getvalue()) == _clean(expected), (
                f"{page.name}, block at line {line}: printed output differs from the page\n"
                f"--- printed ---\n{buf.getvalue()}--- page ---\n{expected}")


def _modules_with_doctests():
    names = [eca_ref.__name__]
    for info in pkgutil.walk_packages(eca_ref.__path__, prefix="eca_ref.", onerror=lambda name: None):
        names.append(info.name)
    return sorted(names)


def test_docstring_examples():
    """Every docstring example in the package runs and prints what it shows."""
    attempted, failures = 0, []
    for name in _modules_with_doctests():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and not exc.name.startswith("eca_ref"):
                continue  # a module that needs an optional package (cupy)
            raise
        finder = doctest.DocTestFinder(exclude_empty=True)
        tests = [t for t in finder.find(module, name, module=module) if t.examples]
        report = io.StringIO()
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        for t in tests:
            runner.run(t, out=report.write)
        result = runner.summarize(verbose=False)
        attempted += result.attempted
        if result.failed:
            failures.append(f"{name}: {result.failed} of {result.attempted} failed\n{report.getvalue()}")
    assert not failures, "\n".join(failures)
    assert attempted >= 10  # the package does have examples: a finder that finds none is a broken test


def test_generated_cli_output_is_current():
    proc = subprocess.run([sys.executable, str(DOCS / "gen.py"), "--check"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, (f"docs drifted from the CLI; run `python docs/gen.py`\n"
                                  f"{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")


@pytest.fixture(scope="module")
def gen():
    """docs/gen.py, imported as a module."""
    sys.path.insert(0, str(DOCS))
    try:
        return importlib.import_module("gen")
    finally:
        sys.path.remove(str(DOCS))


def test_gen_parses_filters_and_rejects_other_commands(gen):
    args, filt = gen._parse("eca-ref verify --seed 1 | grep -E '^│ [12] '")
    assert args == ["verify", "--seed", "1"] and filt[0] == "grep" and filt[1].search("│ 2 │")
    assert gen._parse("eca-ref kernel-size -C 8 | head -n 3") == (["kernel-size", "-C", "8"], ("head", 3))
    for bad in ("python -c 1", "eca-ref verify | sort", "eca-ref verify | head -n 1 | head -n 2"):
        with pytest.raises(gen.GenError):
            gen._parse(bad)
    text = "a\n<!-- gen: eca-ref kernel-size --channels 64 -->\nstale\n<!-- /gen -->\nb\n"
    fresh = gen.regenerate(text)
    assert "$ eca-ref kernel-size --channels 64\nC = 64: k = 3\n" in fresh and "stale" not in fresh
    assert gen._normalise("error 4.44e-16 tol 1e-12") == gen._normalise("error 2.22e-16 tol 1e-12")
    assert gen._normalise("tol 1e-12") != gen._normalise("tol 1e-07")


def test_figures_script(tmp_path):
    pytest.importorskip("matplotlib")
    proc = subprocess.run([sys.executable, str(DOCS / "figures.py"), "--out", str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("band-matrices.png", "kernel-size.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (DOCS / "figures" / name).exists(), f"docs/figures/{name} is missing: run python docs/figures.py"


def test_k_sweep_figure(tmp_path):
    """--ablate draws the kernel-size sweep from ablate's JSON; a result without k rows is refused."""
    pytest.importorskip("matplotlib")
    row = {"variant": "eca", "params_total": 100, "seeds": [0, 1], "statuses": ["finished"] * 2, "seconds": 1.0}
    rows = [{**row, "k": 1, "kernels": [1, 1, 1], "params_added": 3, "test_acc": [0.5, 0.52]},
            {**row, "k": 3, "kernels": [3, 3, 3], "params_added": 9, "test_acc": [0.51, 0.55]},
            {**row, "k": "adaptive", "kernels": [3, 3, 5], "params_added": 11, "test_acc": [0.53, 0.54]}]
    cfg = {"depth": 8, "width": 32, "epochs": 2, "limit": None}
    (tmp_path / "sweep.json").write_text(json.dumps({"config": cfg, "rows": rows}))
    (tmp_path / "plain.json").write_text(json.dumps({"config": cfg, "rows": [{**rows[0], "k": None}]}))
    for name, rc in (("sweep.json", 0), ("plain.json", 1)):
        proc = subprocess.run([sys.executable, str(DOCS / "figures.py"), "--out", str(tmp_path / name[:-5]),
                               "--ablate", str(tmp_path / name)], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == rc, proc.stderr
    assert (tmp_path / "sweep" / "k-sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no kernel-size rows" in proc.stderr and not (tmp_path / "plain" / "k-sweep.png").exists()


def _prose(text: str) -> str:
    """A page without its fenced blocks (code, command output), whitespace collapsed."""
    return " ".join(FENCE.sub(" ", text).split())


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_measured_numbers_in_chapters_come_from_results_md(page):
    """A chapter quotes a measured accuracy (two decimals, "78.35%" or "78.35% ± 0.37%") only if
    docs/results.md, the record of every measurement, has it: no number from memory."""
    results = _prose((DOCS / "results.md").read_text(encoding="utf-8"))
    prose = _prose(page.read_text(encoding="utf-8"))
    for quoted in re.findall(r"\d+\.\d\d% ± \d+\.\d\d%|\d+\.\d\d%", prose):
        assert quoted in results, f"{page.name} quotes {quoted!r}, which docs/results.md does not have"


def test_wide_command_output_says_its_terminal_width():
    """Rich wraps its tables at the terminal's width: command output wider than 80 columns is generated
    with a COLUMNS=N prefix that the reader sees and pastes, so their terminal prints the same table."""
    for page in CHAPTERS:
        for info, body, line in blocks(page.read_text(encoding="utf-8")):
            lines = body.splitlines()
            if info != "console" or not lines or not lines[0].startswith("$ "):
                continue
            if any(len(x) > 80 for x in lines[1:] if not x.startswith("$")) and "eca-ref" in lines[0]:
                assert lines[0].startswith("$ COLUMNS="), (
                    f"{page.name}:{line}: output wider than 80 columns; generate it as <!-- gen: COLUMNS=100 ... -->")


def test_gen_columns_prefix(gen):
    assert gen._parse("COLUMNS=100 eca-ref verify | head -n 2") == (["verify"], ("head", 2))
    assert gen._columns("COLUMNS=60 eca-ref verify") == "60" and gen._columns("eca-ref verify") == "100"
    for bad in ("COLUMNS=10 eca-ref verify", "COLUMNS=x eca-ref verify"):
        with pytest.raises(gen.GenError):
            gen._parse(bad)
    narrow = gen.run_command("COLUMNS=60 eca-ref kernel-size --channels 128")
    assert max(len(x) for x in narrow.splitlines()) <= 60


def test_readme_python_runs_and_commands_are_there():
    """The README's Python example runs, and its set-up commands are the two the project promises."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert 'pip install -e . && eca-ref verify' in readme
    assert 'pip install -e ".[test]" && pytest' in readme
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["out"].shape == (2, 64, 8, 8) and namespace["gate"].shape == (2, 64)
