"""Run the eca-ref command line from a checkout: ``python cli.py verify``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from eca_ref.cli_run import run  # noqa: E402

if __name__ == "__main__":
    run()
