"""Run the eca-ref command line from a checkout: ``python cli.py verify``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    try:
        from eca_ref.cli_run import run
    except KeyboardInterrupt:   # Ctrl-C while the entry point loads (slower on a fresh checkout: no .pyc yet)
        sys.stderr.write("Interrupted by Ctrl-C.\n")
        sys.exit(130)           # eca_ref.cli_run.EXIT_INTERRUPTED, as run() answers
    run()
