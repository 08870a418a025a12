"""A note to the teacher when a submission's functions are near-copies of eca-ref's reference.

The reference is public: a student can read it anywhere. What the grader guarantees is only that
a submission cannot import or read it while it is graded. So a copy earns its points like any
other code, and this module never changes a score; it adds a note, for the teacher only:

    similar_functions(source)      # [Match(name, ratio, reference)] at or above THRESHOLD
    similarity_note(source)        # one line, or None
    note_for_file(path)            # the same for a .py or .ipynb file (None if unreadable)

The measure: each top-level function of the submission, as a list of Python tokens (the standard
library's tokenize; comments, docstrings and line structure left out), against every function and
method of the reference modules (eca_ref/functional, eca_ref/attention), with difflib's
SequenceMatcher ratio (2 * matching tokens / total tokens, 0..1). A function is a near-copy when
its best ratio is >= THRESHOLD (0.9) and it has at least MIN_TOKENS tokens (shorter functions,
such as ``return ds * s * (1 - s)``, look alike whoever writes them). Renaming every variable
evades it: a note is a hint to look, never evidence.
"""
from __future__ import annotations

import ast
import difflib
import io
import tokenize
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from eca_ref.grading.notebook import submission_source

THRESHOLD = 0.9
MIN_TOKENS = 30
PACKAGE = Path(__file__).resolve().parents[1]
REFERENCE_DIRS = ("functional", "attention")
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
         tokenize.ENDMARKER}


@dataclass(frozen=True)
class Match:
    name: str          # the submission's function
    ratio: float       # difflib ratio of the token lists, 0..1
    reference: str     # "functional/pooling.py:gap_forward"


def tokens(code: str) -> tuple:
    """The significant tokens of some code: no comments, no docstrings or other bare strings, no layout."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return ()
    out = []
    for i, t in enumerate(toks):
        if t.type in _SKIP:
            continue
        if t.type == tokenize.STRING:  # a string that is a whole statement (a docstring) says nothing
            before = next((p for p in reversed(toks[:i]) if p.type not in (tokenize.NL, tokenize.COMMENT)), None)
            after = toks[i + 1] if i + 1 < len(toks) else None
            if (before is None or before.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)) and \
                    after is not None and after.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                continue
        out.append(t.string)
    return tuple(out)


def functions(source: str, *, nested: bool = False) -> dict:
    """{name: tokens} of the top-level functions (``nested``: also methods and inner functions)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    nodes = ast.walk(tree) if nested else tree.body
    out = {}
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_source_segment(source, node)
            if text:
                out[node.name] = tokens(text)
    return out


@lru_cache(maxsize=1)
def reference_functions() -> tuple:
    """((where, tokens), ...) of every function of the reference modules, read as text (never imported)."""
    out = []
    for folder in REFERENCE_DIRS:
        for path in sorted((PACKAGE / folder).glob("*.py")):
            for name, toks in functions(path.read_text(encoding="utf-8"), nested=True).items():
                if len(toks) >= MIN_TOKENS // 2:
                    out.append((f"{folder}/{path.name}:{name}", toks))
    return tuple(out)


def similar_functions(source, threshold: float = THRESHOLD) -> list:
    """[Match] of the submission's functions whose best ratio against the reference is >= threshold."""
    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    found = []
    for name, toks in functions(source).items():
        if len(toks) < MIN_TOKENS:
            continue
        best, where = 0.0, ""
        for ref, ref_toks in reference_functions():
            sm = difflib.SequenceMatcher(None, toks, ref_toks, autojunk=False)
            if sm.real_quick_ratio() < max(threshold, best) or sm.quick_ratio() < max(threshold, best):
                continue
            r = sm.ratio()
            if r > best:
                best, where = r, ref
        if best >= threshold:
            found.append(Match(name, round(best, 2), where))
    return found


def similarity_note(source, threshold: float = THRESHOLD):
    """One line for the teacher naming the near-copies, or None. Never a change of score."""
    found = similar_functions(source, threshold)
    if not found:
        return None
    parts = ", ".join(f"{m.name} {m.ratio:.2f} (eca_ref/{m.reference})" for m in found)
    return (f"similarity (note to the teacher, no change of score): {len(found)} function(s) are near-copies of "
            f"eca-ref's reference, token similarity >= {threshold:.2f} (difflib): {parts}")


def note_for_file(path, threshold: float = THRESHOLD):
    """similarity_note of a submitted .py or .ipynb file; None when there is nothing to say or it cannot be read."""
    try:
        source = submission_source(Path(path), Path(path).read_bytes())
    except Exception:  # unreadable files are reported by the grader itself
        return None
    return similarity_note(source, threshold)
