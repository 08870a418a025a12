"""Running the ``eca-ref`` command in-process for tests, and reading its one error line."""
from click.testing import CliRunner

from eca_ref.cli import main


def run(*args):
    """``eca-ref ARGS...`` in this process (paths and numbers may be given as they are)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(r):
    """The one line a failing command printed on stderr: "Error: ...", no traceback."""
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]
