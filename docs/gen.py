"""Regenerate every piece of CLI output shown in docs/*.md by running the real command.

A page marks generated output like this::

    <!-- gen: eca-ref kernel-size --channels 512 -->
    ```console
    $ eca-ref kernel-size --channels 512
    C = 512: k = 5
    ...
    ```
    <!-- /gen -->

Everything between the two markers is written by this script: a ``console``
block with the command line and the command's output. The command runs in this
process through click (the real ``eca-ref`` command group, ``eca_ref.cli:main``)
with a fixed terminal: ``COLUMNS=100``, no colour, the NumPy backend.

The command may start with ``COLUMNS=N`` (N from 40 to 200): the terminal width rich wraps its tables
at, shown to the reader so that the pasted command prints the page's output on a terminal of any width
(the default terminal here is 100 columns; at 80, a wide table would wrap differently). Any console output
with a line wider than 80 characters in a chapter must say ``COLUMNS=`` (tests/test_docs.py checks it).

The command may end with one shell-style filter on the output lines, shown to
the reader as part of the command (so it can be pasted into a shell):

* ``| grep -E 'REGEX'`` keeps the lines that match REGEX (Python ``re.search``);
* ``| head -n N`` keeps the first N lines.

``<!-- gen(data): ... -->`` marks a command that needs the CIFAR-10 data: it is
run only with ``--with-data``; ``--check`` leaves such blocks alone.

Usage::

    python docs/gen.py            # rewrite the pages in place
    python docs/gen.py --check    # exit 1 (and show a diff) when a page has drifted
    python docs/gen.py --list     # list the commands per page
    python docs/gen.py --fill-output PAGE...   # also rewrite the ```output blocks of PAGE from what
                                               # its ```python blocks print now (review with git diff)

Python blocks and their ```output blocks are checked by tests/test_docs.py, not by ``--check``.

``--check`` compares the text exactly, except for numbers printed in scientific
notation with a mantissa (``4.44e-16``): those are rounding errors measured by
``eca-ref verify``, whose last bits depend on the CPU and BLAS of the machine.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
TERMINAL = {"COLUMNS": "100", "LINES": "50", "NO_COLOR": "1", "TERM": "dumb", "FORCE_COLOR": None,
            "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None, "ECA_REF_BACKEND": None}
MARKER = re.compile(r"(?P<open><!-- gen(?P<flag>\(data\))?: (?P<cmd>.+?) -->\n)(?P<body>.*?)(?P<close><!-- /gen -->)",
                    re.DOTALL)
FLOAT_NOISE = re.compile(r"\d\.\d+e[-+]\d+")
COLUMNS_PREFIX = re.compile(r"^COLUMNS=(\d+) ")


class GenError(Exception):
    """A marker that cannot be generated (bad command, command failed)."""


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _parse(cmdline: str):
    """'[COLUMNS=N] eca-ref ARGS [| grep -E RE | head -n N]' -> (args, filter or None)."""
    _columns(cmdline)  # validates a COLUMNS=N prefix
    cmdline = COLUMNS_PREFIX.sub("", cmdline)
    parts = cmdline.split(" | ")
    if len(parts) > 2:
        raise GenError(f"at most one filter per command: {cmdline!r}")
    argv = shlex.split(parts[0])
    if not argv or argv[0] != "eca-ref":
        raise GenError(f"generated commands must start with 'eca-ref': {cmdline!r}")
    filt = None
    if len(parts) == 2:
        f = shlex.split(parts[1])
        if len(f) == 3 and f[:2] == ["grep", "-E"]:
            filt = ("grep", re.compile(f[2]))
        elif len(f) == 3 and f[:2] == ["head", "-n"] and f[2].isdigit():
            filt = ("head", int(f[2]))
        else:
            raise GenError(f"filter must be \"grep -E 'REGEX'\" or 'head -n N': {parts[1]!r}")
    return argv[1:], filt


def _columns(cmdline: str) -> str:
    """The terminal width for a command: its COLUMNS=N prefix, or the default of TERMINAL."""
    m = COLUMNS_PREFIX.match(cmdline)
    if m is None:
        if cmdline.startswith("COLUMNS="):
            raise GenError(f"COLUMNS must be an integer followed by one space: {cmdline!r}")
        return TERMINAL["COLUMNS"]
    if not 40 <= int(m.group(1)) <= 200:
        raise GenError(f"COLUMNS must lie between 40 and 200: {cmdline!r}")
    return m.group(1)


def _main_group(command: str):
    """The real command group. A command defined in an eca_ref/cli_*.py module but not yet
    attached to the group in eca_ref/cli.py is attached here (with a note on stderr)."""
    import importlib
    import pkgutil

    import eca_ref
    from eca_ref.cli import main

    if command in main.commands:
        return main
    for mod in pkgutil.iter_modules(eca_ref.__path__):
        if not mod.name.startswith("cli_"):
            continue
        module = importlib.import_module(f"eca_ref.{mod.name}")
        for cmd in getattr(module, "COMMANDS", []):
            if cmd.name == command:
                print(f"gen.py: note: '{command}' (eca_ref/{mod.name}.py) is not registered in eca_ref/cli.py; "
                      f"attached for this run", file=sys.stderr)
                main.add_command(cmd)
                return main
    return main  # click reports the unknown command


def run_command(cmdline: str) -> str:
    """Run one marker's command; return its output (stdout and stderr), trailing spaces stripped."""
    from click.testing import CliRunner

    args, filt = _parse(cmdline)
    runner = CliRunner(env={**TERMINAL, "COLUMNS": _columns(cmdline)})
    result = runner.invoke(_main_group(args[0] if args else ""), args, prog_name="eca-ref", catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise GenError(f"{cmdline!r} raised {type(result.exception).__name__}: {result.exception}")
    if result.exit_code != 0:
        raise GenError(f"{cmdline!r} exited with status {result.exit_code}:\n{result.output}")
    lines = [line.rstrip() for line in result.output.splitlines()]
    if filt is not None and filt[0] == "grep":
        lines = [line for line in lines if filt[1].search(line)]
    elif filt is not None:
        lines = lines[: filt[1]]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def render(cmdline: str, output: str) -> str:
    return f"```console\n$ {cmdline}\n{output}\n```\n"


def regenerate(text: str, *, with_data: bool = False, log=None) -> str:
    """The page text with every marker's body replaced by fresh output."""
    def replace(m):
        if m.group("flag") and not with_data:
            return m.group(0)
        cmd = m.group("cmd")
        if log is not None:
            log(cmd)
        return m.group("open") + render(cmd, run_command(cmd)) + m.group("close")

    return MARKER.sub(replace, text)


FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def fill_output(text: str, name: str = "page") -> str:
    """Run the page's python blocks in order in one namespace; rewrite each ```output block that
    directly follows one with what it printed (the convention of tests/test_docs.py)."""
    import contextlib
    import io

    found = list(FENCE.finditer(text))
    namespace = {"__name__": "docs_page"}
    pieces, pos, printed = [], 0, None
    for i, m in enumerate(found):
        info = m.group("info").strip()
        if info == "python":
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(m.group("body"), f"{name}:{text.count(chr(10), 0, m.start()) + 1}", "exec"), namespace)
            printed = buf.getvalue()
        elif info == "output" and printed is not None and i > 0 and found[i - 1].group("info").strip() == "python" \
                and not text[found[i - 1].end():m.start()].strip():
            body = "\n".join(line.rstrip() for line in printed.rstrip().splitlines())
            pieces.append(text[pos:m.start()] + f"```output\n{body}\n```")
            pos = m.end()
        else:
            printed = None
    pieces.append(text[pos:])
    return "".join(pieces)


def _normalise(text: str) -> str:
    return FLOAT_NOISE.sub(lambda m: "#" * len(m.group(0)), text)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a page differs from fresh output")
    ap.add_argument("--list", action="store_true", help="list the generated commands of each page")
    ap.add_argument("--with-data", action="store_true", help="also run gen(data) markers (needs CIFAR-10)")
    ap.add_argument("--fill-output", action="store_true",
                    help="also rewrite ```output blocks from what the python blocks print")
    ap.add_argument("pages", nargs="*", type=Path, help="pages to process (default: docs/*.md)")
    opts = ap.parse_args(argv)
    targets = opts.pages or pages()
    drifted, n_blocks = [], 0
    for page in targets:
        text = page.read_text(encoding="utf-8")
        if opts.list:
            for m in MARKER.finditer(text):
                print(f"{page.name}: {'(data) ' if m.group('flag') else ''}{m.group('cmd')}")
            continue
        n_blocks += sum(1 for m in MARKER.finditer(text) if opts.with_data or not m.group("flag"))
        try:
            new = regenerate(text, with_data=opts.with_data)
            if opts.fill_output and not opts.check:
                new = fill_output(new, page.name)
        except GenError as exc:
            print(f"{page.name}: {exc}", file=sys.stderr)
            return 2
        if opts.check:
            if _normalise(new) != _normalise(text):
                drifted.append(page)
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                           f"{page.name} (on disk)", f"{page.name} (fresh)"))
        elif new != text:
            _write_atomic(page, new)
            print(f"updated {page.name}")
    if opts.list:
        return 0
    if opts.check:
        if drifted:
            print(f"\n{len(drifted)} page(s) drifted from the code: {', '.join(p.name for p in drifted)}; "
                  f"run: python docs/gen.py", file=sys.stderr)
            return 1
        print(f"ok: {n_blocks} generated block(s) in {len(targets)} page(s) match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
