"""Click types shared by every command: the one rule for numbers, and seeds.

The rule: numbers on the command line are written in ASCII. Python's ``int()`` and ``float()``
also take fullwidth or other Unicode digits (``int("８") == 8``); eca-ref refuses them, with
the same message for every option, so that no option reads a number another would refuse.
An integer is an optional sign and the digits 0-9.

:func:`asciify` gives every integer and float option of a command this rule; the entry point
(:mod:`eca_ref.cli`) applies it to every command it registers, so options declared with
``type=int`` or ``click.IntRange`` anywhere follow it too.

A seed is an integer with 0 <= seed < 2**32 (what NumPy's generators accept everywhere).
"""
from __future__ import annotations

import re

import click

from eca_ref.errors import InputError

SEED_LIMIT = 2 ** 32
_INT = re.compile(r"[+-]?[0-9]+")
INT_RULE = "an integer in ASCII digits 0-9"


def ascii_int(text):
    """The integer written in ``text`` (optional sign, ASCII digits 0-9, spaces around), or None."""
    s = str(text).strip()
    return int(s) if _INT.fullmatch(s) else None


def parse_int(text, name: str) -> int:
    """An integer written in ASCII digits, else :class:`InputError` naming ``name`` and the rule."""
    v = ascii_int(text)
    if v is None:
        raise InputError(f"{name} must be {INT_RULE}, got {text!r}")
    return v


def check_ascii(text, name: str):
    """Refuse a text option whose numbers are not written in ASCII (e.g. ``--stage-k ３,5``)."""
    if text is not None and not str(text).isascii():
        raise InputError(f"{name} must be written in ASCII (numbers in digits 0-9), got {text!r}")
    return text


class _AsciiNumber:
    """Mixin: a string must be written in ASCII before click's int/float conversion sees it."""

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            integer = isinstance(self, click.types.IntParamType)
            if integer and ascii_int(value) is None:
                self.fail(f"{value!r} is not a valid integer (write it in ASCII digits 0-9)", param, ctx)
            if not integer and not value.isascii():
                self.fail(f"{value!r} is not a valid number (write it in ASCII digits 0-9)", param, ctx)
        return super().convert(value, param, ctx)


class AsciiInt(_AsciiNumber, click.types.IntParamType):
    pass


class AsciiIntRange(_AsciiNumber, click.IntRange):
    pass


class AsciiFloat(_AsciiNumber, click.types.FloatParamType):
    pass


class AsciiFloatRange(_AsciiNumber, click.FloatRange):
    pass


def _ascii_type(t):
    if isinstance(t, _AsciiNumber):
        return t
    if isinstance(t, (click.IntRange, click.FloatRange)):
        cls = AsciiIntRange if isinstance(t, click.IntRange) else AsciiFloatRange
        return cls(t.min, t.max, min_open=t.min_open, max_open=t.max_open, clamp=t.clamp)
    if isinstance(t, click.types.IntParamType):
        return AsciiInt()
    if isinstance(t, click.types.FloatParamType):
        return AsciiFloat()
    return t


def asciify(command: click.Command) -> click.Command:
    """Give every integer and float option of ``command`` (and of its subcommands) the ASCII rule."""
    for param in command.params:
        param.type = _ascii_type(param.type)
    for sub in getattr(command, "commands", {}).values():
        asciify(sub)
    return command


def _seed_or_none(value):
    v = value if isinstance(value, int) and not isinstance(value, bool) else ascii_int(value)
    return v if v is not None and 0 <= v < SEED_LIMIT else None


SEED_RULE = "a seed is an integer with 0 <= seed < 2**32 (ASCII digits 0-9)"


class SeedType(click.ParamType):
    """``--seed``: an integer with 0 <= seed < 2**32."""

    name = "seed"

    def get_metavar(self, param, ctx=None):
        return "SEED"

    def convert(self, value, param, ctx):
        v = _seed_or_none(value)
        if v is None:
            self.fail(f"{value!r}: {SEED_RULE}", param, ctx)
        return v


class SeedListType(click.ParamType):
    """``--seeds 0,1,2``: comma-separated seeds, each 0 <= seed < 2**32."""

    name = "seeds"

    def get_metavar(self, param, ctx=None):
        return "SEED,SEED,..."

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [t.strip() for t in str(value).split(",") if t.strip()]
        if not items:
            self.fail(f"{value!r}: give at least one seed ({SEED_RULE})", param, ctx)
        seeds = []
        for item in items:
            v = _seed_or_none(item)
            if v is None:
                self.fail(f"{item!r} in {value!r}: {SEED_RULE}", param, ctx)
            seeds.append(v)
        return seeds


SEED = SeedType()
SEED_LIST = SeedListType()
