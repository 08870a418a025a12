"""The ``eca-ref`` command line: thin click shells over plain functions.

Every command calls a function of the package that returns a result (usable
from Python and notebooks) and only formats it here. Whatever goes wrong ends
in one line on stderr, never a traceback, with the exit status saying what:

- 0: done;
- 1: a check failed (``verify``), or the system refused: a full disk, a
  read-only folder, a permission, a missing file, no memory, a closed or full
  standard output; the line names the path (or the size) and what to do;
- 2: a usage error or bad input (:class:`eca_ref.errors.EcaRefError`, and
  click's errors such as a value that is not a number);
- 130: interrupted by Ctrl-C (``train`` writes its checkpoint first);
- a broken pipe (the reader of standard output went away, ``| head``): status 1
  and no message, as Python's documentation recommends (and rich does).

The console script runs :func:`eca_ref.cli_run.run`, which also turns Ctrl-C
during the imports at startup into status 130.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import sys

import click

from eca_ref.cli_types import asciify
from eca_ref.errors import EcaRefError

EXIT_INTERRUPTED = 130

_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up: free some space or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: choose a path you may use, or change its permissions",
    errno.EPERM: "not permitted: choose a path you may use, or change its permissions",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENOTDIR: "a part of the path is not a folder: check the path",
    errno.EISDIR: "a folder where a file was expected: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer cores",
    errno.EIO: "input/output error: check the disk or the device",
}


def _say(line: str, code: int):
    """``line`` on stderr (when stderr can still be written) and exit with ``code``."""
    try:
        click.echo(line, err=True)
    except (OSError, ValueError):
        pass
    sys.exit(code)


def _usage_error(exc: click.UsageError):
    """click's usage errors (a bad option value, an unknown option or command) as one line, status 2."""
    where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    _say(f"Error: {exc.format_message().rstrip('.')}{where}", 2)


def _streams():
    out = [sys.stdout, sys.__stdout__]
    return out + [getattr(s, "buffer", None) for s in out if s is not None]


def _what_failed(exc: OSError):
    """("stdout", None) when writing standard output failed, else ("path", the path or None).

    The system names the path of a failed open/mkdir/rename (``exc.filename``); a write() on a
    full disk names none, so the failing frames are searched for the file or the ``path`` written.
    """
    if getattr(exc, "eca_ref_stdout", False):
        return "stdout", None
    if exc.filename is not None:
        name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes, os.PathLike)) else str(exc.filename)
        return "path", name + (f" -> {os.fsdecode(exc.filename2)}" if exc.filename2 is not None else "")
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    streams = [s for s in _streams() if s is not None]
    for frame in reversed(frames):   # innermost first
        local = frame.f_locals
        for v in local.values():
            if any(v is s for s in streams) or (type(v).__name__ == "Console" and
                                                any(getattr(v, "file", None) is s for s in streams)):
                return "stdout", None
            name = getattr(v, "name", None) if isinstance(v, io.IOBase) else None
            if isinstance(name, str) and not name.startswith("<"):
                return "path", name
        if isinstance(local.get("path"), (str, os.PathLike)):
            return "path", os.fspath(local["path"])
    return "path", None


def _flush_stdout():
    """Flush stdout here, where a full or closed stdout can be told, rather than as noise at exit."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        exc.eca_ref_stdout = True
        raise


def _silence_stdout():
    """Send what is left for stdout to /dev/null, so that the flush at exit has nothing to complain of."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. click's test runner)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives until exit)


_REFUSALS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
             errno.EMFILE, errno.ENFILE}


def exit_code_of(exc: EcaRefError) -> int:
    """The exit status of an EcaRefError: its class's ``exit_code``; 1 where the base's 2 would
    call a refusal of the system (an OSError such as ENOSPC or EACCES, a MemoryError) bad input."""
    code = getattr(exc, "exit_code", 2)
    if code != EcaRefError.exit_code:
        return code
    cause, depth = exc.__cause__ or exc.__context__, 0
    while cause is not None and depth < 8:
        if isinstance(cause, MemoryError) or (isinstance(cause, OSError) and cause.errno in _REFUSALS):
            return 1
        cause, depth = cause.__cause__ or cause.__context__, depth + 1
    return code


def os_error_line(exc: OSError, path=None) -> str:
    """One line for an OSError: the path, the system's words and what to do."""
    if exc.errno is None and exc.strerror is None and str(exc):
        return f"Error: {exc}"  # an OSError of the package, e.g. RunWriteError: its message says it all
    code = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    what = f"{exc.strerror or exc}" + (f" ({code})" if code else "")
    advice = _ADVICE.get(exc.errno, "")
    return f"Error: {path + ': ' if path else ''}{what}" + (f"; {advice}" if advice else "")


def memory_line(exc: MemoryError) -> str:
    """One line for a MemoryError (NumPy's names the size and the shape)."""
    said = str(exc).strip().rstrip(".")
    return (f"Error: out of memory{': ' + said if said else ''}; use smaller sizes (batch, width, shape) "
            f"or free memory")


@contextlib.contextmanager
def faults():
    """The one mechanism: Ctrl-C, OSError and MemoryError end in one line and an exit status."""
    try:
        yield
    except KeyboardInterrupt:
        _say("Interrupted by Ctrl-C.", EXIT_INTERRUPTED)
    except MemoryError as exc:
        _say(memory_line(exc), 1)
    except OSError as exc:
        what, path = _what_failed(exc)
        if what == "stdout":
            _silence_stdout()
            if exc.errno == errno.EPIPE:
                sys.exit(1)   # the reader went away (`| head`): nothing to tell it, as rich does too
            _say(f"Error: cannot write to standard output: {exc.strerror or exc}; "
                 f"check where the output goes (a full disk?)", 1)
        _say(os_error_line(exc, path), 1)


class _Main(click.Group):
    """The entry point: every fault of every command ends in :func:`faults` or as a usage error (status 2)."""

    def main(self, *args, **kwargs):
        with faults():
            try:
                return super().main(*args, **kwargs)
            finally:
                _flush_stdout()

    def make_context(self, *args, **kwargs):
        with faults():
            try:
                return super().make_context(*args, **kwargs)
            except click.UsageError as exc:  # the group's own options, e.g. --backend
                _usage_error(exc)

    def invoke(self, ctx):
        with faults():
            try:
                return super().invoke(ctx)
            except EcaRefError as exc:
                _say(f"Error: {exc}", exit_code_of(exc))
            except click.UsageError as exc:  # a command's options and arguments
                _usage_error(exc)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eca-ref")
@click.option("--backend", type=click.Choice(["numpy", "cupy"]), default=None, envvar="ECA_REF_BACKEND",
              help="Array library for every computation (default numpy; also $ECA_REF_BACKEND).")
def main(backend):
    """eca-ref: the reference implementation of ECA-Net in plain NumPy."""
    if backend:
        from eca_ref.backend import set_backend
        set_backend(backend)


def _register():
    # Each area keeps its commands in its own module; they are attached here, and every integer or
    # float option of every command gets the one rule for numbers (ASCII digits: eca_ref.cli_types).
    from eca_ref import cli_bench, cli_core, cli_data, cli_grade, cli_params, cli_train
    for module in (cli_core, cli_params, cli_data, cli_train, cli_grade, cli_bench):
        for cmd in module.COMMANDS:
            main.add_command(asciify(cmd))


_register()
