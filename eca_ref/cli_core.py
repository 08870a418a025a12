"""CLI commands of the core: kernel-size, compare-params, verify."""
from __future__ import annotations

COMMANDS: list = []
