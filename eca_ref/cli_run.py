"""The console script ``eca-ref``: :func:`run` holds everything, the imports of the command line included.

It is kept this small so that Ctrl-C at any moment after the package's own import (NumPy) ends
in one line and status 130 rather than a KeyboardInterrupt traceback; every other fault is
turned into one line by :func:`eca_ref.cli.faults` (see :mod:`eca_ref.cli` for the exit statuses).
"""
from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def run(args=None):
    """Run ``eca-ref`` with ``args`` (default: the command line); exits with the command's status."""
    try:
        from eca_ref.cli import main  # here, not at the top: Ctrl-C while importing is caught too

        main.main(args=args, prog_name="eca-ref")
    except KeyboardInterrupt:
        try:
            sys.stderr.write("Interrupted by Ctrl-C.\n")
        except (OSError, ValueError):
            pass
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    run()
