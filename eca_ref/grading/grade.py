"""Grade one submission or a folder of them: plain functions that return results.

    from eca_ref.grading import grade_submission
    result = grade_submission("alice.py", seed=0, timeout=5)
    result.score, result.max_score, [t.name for t in result.tests]

The order of events for one submission: read its bytes, build the inputs from
the seed (and the bytes), run the submission in a limited child process
(:mod:`eca_ref.grading.runner`), and only after that process is gone compute the
reference answers and compare (:mod:`eca_ref.grading.checks`). Nothing a
submission does can crash the grader: every failure becomes a line of the report.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path

from eca_ref.errors import InputError
from eca_ref.grading import checks, runner, sandbox
from eca_ref.grading.notebook import SUBMISSION_SUFFIXES, submission_source
from eca_ref.grading.rubric import DEFAULT_RUBRIC, build_job
from eca_ref.grading.starter import STARTER_VERSION

DEFAULT_TIMEOUT = 5.0          # s per rubric entry and for the import
DEFAULT_TOTAL_TIMEOUT = 120.0  # s for the whole submission
DEFAULT_MEMORY_MB = 1024
MAX_SOURCE = 1 << 20           # bytes: a submission is one file of a few hundred lines


@dataclass
class TestResult:
    name: str
    score: float
    max_score: float
    passed: int                # cases passed
    total: int                 # cases
    summary: str               # one line: the measured error, or the first failure
    output: str                # every case, one line each


@dataclass
class GradeResult:
    submission: str
    score: float
    max_score: float
    tests: list
    status: str                # "graded", "import-error", "grader-error"
    seed: int
    starter_version: str | None
    notes: list = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    sandbox: dict = field(default_factory=dict)   # the protections in force (sandbox.Protections.as_dict)


# entries an entry builds on: when both lose points, the downstream one says "fix ... first"
UPSTREAM = {"eca_forward": ("gap_forward", "sigmoid_forward"), "eca_band_forward": ("gap_forward", "sigmoid_forward"),
            "se_forward": ("gap_forward", "sigmoid_forward"), "eca_backward": ("gap_backward", "sigmoid_backward"),
            "se_backward": ("gap_backward", "sigmoid_backward")}


def _upstream_notes(tests):
    """A downstream entry that loses points while an entry it builds on does too: say which to fix first."""
    by_name = {t.name: t for t in tests}
    for t in tests:
        if t.score >= t.max_score:
            continue
        wrong = [u for u in UPSTREAM.get(t.name, ()) if u in by_name and by_name[u].score < by_name[u].max_score]
        if wrong:
            hint = (f"{' and '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} wrong too: if your {t.name} "
                    f"uses {'it' if len(wrong) == 1 else 'them'}, fix {' and '.join(wrong)} first")
            t.summary = f"{t.summary} ({hint})"
            t.output = f"{t.output}\nnote: {hint}"


def check_seed(seed) -> int:
    """The seed as an int, 0 <= seed < 2**32; anything else is an InputError (never a silent 0 for everyone)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise InputError(f"seed must be an integer with 0 <= seed < 2**32, got {seed!r}")
    return int(seed)


def _starter_version(source: bytes) -> str | None:
    """STARTER_VERSION = "..." at the top level of the submission, read without running it."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "STARTER_VERSION"
                                                for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value[:20]
    return None


def _fmt_err(e: float | None) -> str:
    return "" if e is None else f"{e:.1e}"


def _test_result(entry, cases) -> TestResult:
    passed = sum(c.passed for c in cases)
    total = len(cases)
    score = round(entry.points * sum(c.credit for c in cases) / total, 2) if total else 0.0
    if score == int(score):
        score = int(score)
    lines = []
    for c in cases:
        if c.passed:
            lines.append(f"ok    {c.label}" + (f"  (err {_fmt_err(c.error)})" if c.error is not None else ""))
        else:
            lines.append(f"FAIL  {c.label}: {c.message}")
    failing = [c for c in cases if not c.passed]
    if not failing:
        errs = [c.error for c in cases if c.error is not None]
        kind = "grad err" if entry.kind == "gradcheck" else "max err"
        summary = f"{kind} {max(errs):.1e}" if errs and entry.kind != "int" else "all correct"
    else:
        first = failing[0]
        messages = {c.message for c in failing}
        same_everywhere = len(messages) == 1 and len(failing) == total
        summary = first.message if same_everywhere else f"{first.label}: {first.message}"
    header = f"{entry.description}: {passed}/{total} cases passed"
    return TestResult(entry.name, score, entry.points, passed, total, summary, "\n".join([header] + lines))


def grade_source(source: bytes, name: str, *, rubric=DEFAULT_RUBRIC, seed: int = 0,
                 timeout: float = DEFAULT_TIMEOUT, total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
                 memory_mb: int = DEFAULT_MEMORY_MB, sandbox_level: str | None = None) -> GradeResult:
    """Grade a submission given as bytes. Never raises for anything the submission does.

    ``sandbox_level``: auto (default, or $ECA_GRADE_SANDBOX), namespaces, userns or none; bad
    arguments (a negative seed, a level this platform lacks) are an InputError.
    """
    seed = check_seed(seed)
    prot = sandbox.detect(sandbox_level)
    max_score = sum(e.points for e in rubric)
    version = _starter_version(source)
    notes = []
    if version is None:
        notes.append(f"no STARTER_VERSION found; this grader expects starter {STARTER_VERSION}")
    elif version != STARTER_VERSION:
        notes.append(f"the submission says STARTER_VERSION = {version!r}; this grader expects {STARTER_VERSION!r}")
    try:
        entries, inputs, metas = build_job(rubric, seed, source)
        outcome = runner.run_submission(source, entries, inputs, timeout=timeout, total_timeout=total_timeout,
                                        memory_mb=memory_mb, protections=prot)
        # The child is gone: only now are the reference answers computed.
        tests = []
        for entry, meta, run in zip(rubric, metas, outcome.entries):
            cases = checks.check_entry(entry.kind, meta, run, inputs)
            if run.status == "ok":
                for c in cases:
                    if c.message.startswith("MemoryError"):
                        c.message += f" (the memory limit is {memory_mb} MiB)"
            tests.append(_test_result(entry, cases))
        _upstream_notes(tests)
    except Exception as exc:  # a bug of the grader itself: still a result, clearly labelled
        msg = f"grader error ({type(exc).__name__}: {exc}); please report it"
        tests = [TestResult(e.name, 0, e.points, 0, 0, msg, msg) for e in rubric]
        return GradeResult(name, 0, max_score, tests, "grader-error", seed, version, notes + [msg],
                           sandbox=prot.as_dict())
    score = round(sum(t.score for t in tests), 2)
    if score == int(score):
        score = int(score)
    status = "graded"
    if outcome.import_error is not None:
        status = "import-error"
        notes.append(f"the submission could not be imported: {outcome.import_error}")
    if outcome.output_bytes > 2 * runner.KEEP_OUTPUT:
        notes.append(f"the submission printed {outcome.output_bytes:,} bytes; only the first and last "
                     f"{runner.KEEP_OUTPUT:,} of each stream are kept")
    return GradeResult(name, score, max_score, tests, status, seed, version, notes,
                       outcome.stdout, outcome.stderr, prot.as_dict())


def grade_submission(path, **kwargs) -> GradeResult:
    """Grade one .py file. A missing or unreadable file is an InputError (the CLI: one line, exit 2)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise InputError(f"submission {path} is a dangling symbolic link (to {os.readlink(path)})")
    if not path.exists():
        raise InputError(f"submission not found: {path}")
    if not path.is_file():
        raise InputError(f"submission must be a .py file, got a folder or special file: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE:
            raise InputError(f"submission {path} is {size:,} bytes; the limit is {MAX_SOURCE:,}")
        source = submission_source(path, path.read_bytes())  # a notebook's code cells
    except OSError as exc:
        raise InputError(f"cannot read submission {path}: {exc.strerror or exc}") from None
    return grade_source(source, path.name, **kwargs)


def find_submissions(folder) -> list:
    """Every .py file directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    # links count even when dangling (they get a row that says so, never a silent skip); folders do not
    files = sorted(p for p in folder.iterdir() if p.suffix in SUBMISSION_SUFFIXES
                   and (p.is_symlink() or not p.is_dir()))
    if not files:
        raise InputError(f"no .py files to grade in {folder}")
    return files


def grade_folder(folder, progress=None, **kwargs) -> list:
    """Grade every .py in ``folder``; returns GradeResults in file-name order.

    ``progress(i, n, path)`` is called before each submission (for a progress bar).
    """
    check_seed(kwargs.get("seed", 0))  # a bad argument is the teacher's error, not a zero for every student
    sandbox.detect(kwargs.get("sandbox_level"))
    files = find_submissions(folder)
    results = []
    for i, path in enumerate(files):
        if progress is not None:
            progress(i, len(files), path)
        try:
            results.append(grade_submission(path, **kwargs))
        except InputError as exc:  # e.g. a file that vanished or is too large: it still gets a row
            rubric = kwargs.get("rubric", DEFAULT_RUBRIC)
            results.append(GradeResult(path.name, 0, sum(e.points for e in rubric), [], "unreadable",
                                       kwargs.get("seed", 0), None, [str(exc)]))
    return results


def check_outputs(outputs, inputs):
    """An output path never overwrites an input (a submission, a points file): InputError if one would."""
    for out in outputs:
        if out is None:
            continue
        out = Path(out)
        for inp in inputs:
            if inp is None:
                continue
            inp = Path(inp)
            same = out.exists() and inp.exists() and os.path.samefile(out, inp)
            if same or os.path.abspath(out) == os.path.abspath(inp):
                raise InputError(f"refusing to write {out}: it is an input of this run ({inp})")
