"""The one rich console every command prints with.

On a terminal, rich fits tables to the terminal's width. Written to a file or a pipe
(``eca-ref compare-params --network resnet50 --flops > table.txt``), rich would assume 80 columns
and cut a wide table's cells to "…", losing digits; here the width is then :data:`FILE_WIDTH`,
wide enough for every table eca-ref prints, so a saved table holds every number.
``COLUMNS=N`` sets the width in both cases (rich reads it).
"""
from __future__ import annotations

import os

from rich.console import Console

FILE_WIDTH = 240


def make_console(*, stderr: bool = False, **kwargs) -> Console:
    """A :class:`rich.console.Console` on stdout (or stderr): the terminal's width on a terminal,
    :data:`FILE_WIDTH` columns into a file or pipe, ``COLUMNS`` when set. ``kwargs`` go to rich."""
    console = Console(stderr=stderr, **kwargs)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(stderr=stderr, width=FILE_WIDTH, **kwargs)
    return console
