"""A Gradescope autograder in one command: ``eca-ref assignment autograder OUT.zip``.

The zip holds, at its root, ``setup.sh`` and ``run_autograder`` (from ``autograder_files/``),
the eca-ref that wrote it as a wheel (so a regrade next year runs the same code),
``constraints.txt`` (the teacher's NumPy, SciPy, click and rich versions) and
``eca_autograder.json``: the rubric's points, the seed, the time and memory limits and each test's
visibility, frozen. On Gradescope the zip is unpacked in ``/autograder/source``; for each
submission ``run_autograder`` calls ``python -m eca_ref.grading.autograder --root /autograder``,
which grades the .py or .ipynb of ``/autograder/submission`` and writes
``/autograder/results/results.json`` (score, markdown output, execution_time, tests with
visibility), atomically. See docs/grading-teachers.md ("Gradescope").
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

from eca_ref.errors import InputError
from eca_ref.grading.grade import grade_submission
from eca_ref.grading.notebook import SUBMISSION_SUFFIXES
from eca_ref.grading.report import atomic_write_text, gradescope_dict
from eca_ref.grading.rubric import rubric_with_points
from eca_ref.grading.similarity import THRESHOLD, note_for_file
from eca_ref.grading.starter import NOTEBOOK_FILE, STARTER_FILE, STARTER_VERSION

CONFIG_FILE = "eca_autograder.json"
FILES = Path(__file__).with_name("autograder_files")
SCRIPTS = ("setup.sh", "run_autograder")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
PINNED = ("numpy", "scipy", "click", "rich")
DEFAULT_MEMORY_MB = 512        # the submission's process; Gradescope's default container has about 768 MB
SIMILARITY_TEST = "similarity to the reference (teacher only, no points)"


def _version() -> str:
    try:
        return metadata.version("eca-ref")
    except metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------ writing the zip
def make_config(*, points=None, seed: int = 0, timeout: float = 5.0, total_timeout: float = 120.0,
                memory_mb: int = DEFAULT_MEMORY_MB, visibility=None) -> dict:
    """The frozen options; ``visibility`` maps rubric entries (or "all") to one of VISIBILITIES."""
    rubric = rubric_with_points(points)
    names = [e.name for e in rubric]
    vis = {n: "visible" for n in names}
    for name, value in (visibility or {}).items():
        if value not in VISIBILITIES:
            raise InputError(f"visibility of {name} must be one of {', '.join(VISIBILITIES)}, got {value!r}")
        if name == "all":
            vis = {n: value for n in names}
        elif name not in vis:
            raise InputError(f"no rubric entry {name!r}; the entries are: {', '.join(names)}")
    for name, value in (visibility or {}).items():
        if name != "all":
            vis[name] = value
    return {"eca_ref_version": _version(), "starter_version": STARTER_VERSION,
            "points": {e.name: e.points for e in rubric}, "seed": seed, "timeout": timeout,
            "total_timeout": total_timeout, "memory_mb": memory_mb, "visibility": vis}


def package_source() -> Path:
    """The folder with eca-ref's pyproject.toml (a checkout, or an editable install)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "eca-ref"' not in pyproject.read_text(encoding="utf-8"):
        raise InputError(f"cannot find eca-ref's source (pyproject.toml) at {root}, so no wheel can be built; "
                         f"pass --wheel FILE (a wheel of this eca-ref version) or run from a checkout")
    return root


def build_wheel(dest) -> Path:
    """A wheel of the installed eca-ref's source, built offline (pip wheel --no-build-isolation) into ``dest``.

    The source is copied to a temporary folder first, so the checkout gets no build/ or egg-info.
    """
    root = package_source()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(root / "eca_ref", src / "eca_ref",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        out = Path(tmp) / "wheel"
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", "-w", str(out), str(src)], capture_output=True, text=True)
        wheels = sorted(out.glob("eca_ref-*.whl"))
        if res.returncode != 0 or not wheels:
            last = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no wheel written"]
            raise InputError(f"building the eca-ref wheel failed: {last[0]} (pass --wheel FILE)")
        target = Path(dest) / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def constraints() -> str:
    lines = []
    for name in PINNED:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def _add(zf, name: str, data: bytes, executable: bool = False):
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    zf.writestr(info, data)


def write_autograder(out_zip, config: dict, wheel=None) -> list:
    """Write the Gradescope zip; returns the names inside it. ``wheel``: bundle this file, else build one."""
    out_zip = Path(out_zip)
    folder = out_zip.parent if str(out_zip.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"folder does not exist: {folder}")
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            wheel = build_wheel(tmp)
        wheel = Path(wheel)
        if not wheel.is_file() or not wheel.name.startswith("eca_ref-") or wheel.suffix != ".whl":
            raise InputError(f"not an eca-ref wheel: {wheel}")
        data = wheel.read_bytes()
        config = dict(config, wheel=wheel.name, wheel_sha256=hashlib.sha256(data).hexdigest())
        partial = folder / f".{out_zip.name}.partial"
        with zipfile.ZipFile(partial, "w") as zf:
            for name in SCRIPTS:
                _add(zf, name, (FILES / name).read_bytes(), executable=True)
            _add(zf, wheel.name, data)
            _add(zf, "constraints.txt", constraints().encode())
            _add(zf, CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
            names = zf.namelist()
        os.replace(partial, out_zip)
    return names


# ------------------------------------------------------------------ grading on Gradescope
def load_config(source) -> dict:
    path = Path(source) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        rubric_with_points(config["points"])
        for key in ("seed", "timeout", "total_timeout", "memory_mb", "visibility"):
            config[key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"the autograder's config {path} is missing or broken ({type(exc).__name__}: {exc})") \
            from None
    return config


def find_submission(folder) -> Path:
    """The file to grade: eca_assignment.py, else eca_assignment.ipynb, else the only .py/.ipynb anywhere."""
    folder = Path(folder)
    for name in (STARTER_FILE, NOTEBOOK_FILE):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.rglob("*") if p.suffix in SUBMISSION_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts))
    named = [p for p in found if p.name in (STARTER_FILE, NOTEBOOK_FILE)]
    if len(named) == 1 or len(found) == 1:
        return (named or found)[0]
    if not found:
        raise InputError(f"no .py or .ipynb file was submitted; upload {STARTER_FILE} (or {NOTEBOOK_FILE})")
    listed = ", ".join(str(p.relative_to(folder)) for p in found[:5])
    raise InputError(f"{len(found)} .py/.ipynb files were submitted ({listed}); upload one, named {STARTER_FILE} "
                     f"or {NOTEBOOK_FILE}")


def _fence(text: str) -> str:
    run, longest = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _markdown(result, config, shown) -> str:
    """The top-level output: the visible tests only (hidden ones would leak through a summary)."""
    everything = len(shown) == len(result.tests)
    head = f"**eca-ref grader** {config.get('eca_ref_version', '')}: `{result.submission}`, seed {result.seed}"
    lines = [head + (f", **{result.score} / {result.max_score} points**" if everything else "")]
    if shown:
        lines += ["", "| test | points | result |", "|---|---:|---|"]
        lines += [f"| {t.name} | {t.score}/{t.max_score} | {t.summary.replace('|', '/')} |" for t in shown]
    if not everything:
        lines += ["", f"{len(result.tests) - len(shown)} more test(s) are shown later."]
    if result.notes:
        lines += [""] + [f"- {n}" for n in result.notes]
    sb = getattr(result, "sandbox", None)
    if isinstance(sb, dict):
        lines += ["", f"Sandbox: {sb.get('level')}; runs as {sb.get('user')}; process tree ended by "
                      f"{sb.get('kill_scope')}."]
    for what, text in (("standard output", result.stdout), ("standard error", result.stderr)):
        if text.strip():
            lines += ["", f"The submission's {what}:", "", _fence(text.rstrip())]
    return "\n".join(lines)


def gradescope_results(result, config: dict, *, elapsed: float, note=None) -> dict:
    """Gradescope's results.json for a GradeResult, with each test's visibility from the config."""
    data = gradescope_dict(result)
    vis = config["visibility"]
    for t in data["tests"]:
        t["visibility"] = vis.get(t["name"], "visible")
    shown = [t for t in result.tests if vis.get(t.name, "visible") == "visible"]
    data.update(output=_markdown(result, config, shown), output_format="markdown", test_output_format="text",
                execution_time=round(elapsed, 2))
    data.pop("stdout_visibility", None)  # the output is the students' to see; what is hidden stays in tests
    data.setdefault("extra_data", {})["eca_ref_version"] = config.get("eca_ref_version")
    if note:
        data["tests"].append({"name": SIMILARITY_TEST, "score": 0, "max_score": 0, "status": "passed",
                              "output": note, "visibility": "hidden"})
    return data


def error_results(message: str, *, elapsed: float) -> dict:
    return {"score": 0, "output": f"**The submission could not be graded.**\n\n{_fence(message)}",
            "output_format": "markdown", "execution_time": round(elapsed, 2), "tests": []}


def run(root) -> dict:
    """Grade the submission of a Gradescope layout under ``root``; writes and returns results.json's data."""
    start = time.monotonic()
    root = Path(root)
    results = root / "results" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    try:
        config = load_config(root / "source")
        path = find_submission(root / "submission")
        result = grade_submission(path, rubric=rubric_with_points(config["points"]), seed=int(config["seed"]),
                                  timeout=float(config["timeout"]), total_timeout=float(config["total_timeout"]),
                                  memory_mb=int(config["memory_mb"]))
        data = gradescope_results(result, config, elapsed=time.monotonic() - start,
                                  note=note_for_file(path, THRESHOLD))
    except InputError as exc:
        data = error_results(str(exc), elapsed=time.monotonic() - start)
    atomic_write_text(results, json.dumps(data, indent=2) + "\n")
    return data


def check(source) -> str:
    """setup.sh's last step: the config loads and names the eca-ref that is installed."""
    config = load_config(source)
    if config.get("eca_ref_version") != _version():
        raise InputError(f"the autograder was made with eca-ref {config.get('eca_ref_version')}, "
                         f"but {_version()} is installed")
    return f"eca-ref {_version()} autograder ready: {sum(config['points'].values())} points, seed {config['seed']}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eca_ref.grading.autograder", description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    ap.add_argument("--check", metavar="SOURCE", help="only check the config in SOURCE (setup.sh)")
    opts = ap.parse_args(argv)
    try:
        if opts.check:
            print(check(opts.check))
            return 0
        data = run(opts.root)
    except InputError as exc:
        print(f"eca-ref autograder: {exc}", file=sys.stderr)
        return 2
    print(f"eca-ref autograder: score {data.get('score')} in {data.get('execution_time')} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
