"""The registry of attention variants: one entry per row of the paper's SE-variants table.

Tests, the parameter tables, the CLI, the trainer and the grader loop over
``VARIANTS`` without naming variants. Each variant is declared (with keyword
arguments, next to its f) in :mod:`eca_ref.attention.variants` (none, SE and
its variants) or :mod:`eca_ref.attention.eca` (ECA and its forms); adding one
means declaring it there and listing it here.
"""
from __future__ import annotations

from collections.abc import Mapping

from eca_ref.attention.eca import CECA, ECA, ECA_BAND, ECA_NS
from eca_ref.attention.module import Variant
from eca_ref.attention.variants import NONE, SE, SE_GC, SE_VAR1, SE_VAR2, SE_VAR3
from eca_ref.errors import InputError

# In the order of the paper's SE-variants table (docs/paper.md, Table 2), then ECA's two other forms.
_LIST = [NONE, SE, SE_VAR1, SE_VAR2, SE_VAR3, SE_GC, ECA_NS, ECA, ECA_BAND, CECA]


class UnknownVariantError(InputError, KeyError):
    """An attention variant name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Mapping):
    """A read-only mapping name -> Variant whose lookup error lists the known names."""

    def __init__(self, variants):
        self._d = {v.name: v for v in variants}

    def __getitem__(self, name):
        try:
            return self._d[name]
        except (KeyError, TypeError):
            raise UnknownVariantError(
                f"unknown attention variant {name!r}; known: {', '.join(self._d)}") from None

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __repr__(self):
        return f"Registry({', '.join(self._d)})"


VARIANTS = Registry(_LIST)


def get_variant(name) -> Variant:
    """VARIANTS[name], with an error that lists the known names."""
    return VARIANTS[name]
