"""CLI commands of the core: ``kernel-size`` and ``verify``.

Each command is a thin shell: the work is done by a plain function
(:func:`eca_ref.attention.kernel_size_info`, :func:`eca_ref.verify.run_verify`).
"""
from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from eca_ref.attention import kernel_size_info
from eca_ref.cli_console import make_console
from eca_ref.cli_types import INT_RULE, SEED, ascii_int
from eca_ref.errors import InputError


MAX_CHANNEL_VALUES = 10000


def _range_count(a: int, b: int, step) -> int:
    """How many values A:B (doubling) or A:B:STEP holds, from arithmetic alone (nothing is built)."""
    if step is not None:
        return (b - a) // step + 1
    return (b // a).bit_length()   # a, 2a, 4a, ... <= b: 1 + floor(log2(b / a)) values


def parse_channels(values) -> list[int]:
    """Channel counts from ``--channels`` values: ``512``, ``16:4096`` (doubling), ``8:64:8`` (step).

    Numbers are ASCII digits (the rule of every integer option); at most 10000 values in all,
    counted before any range is built.
    """
    out: list[int] = []
    for raw in values:
        parts = str(raw).split(":")
        nums = [ascii_int(p) for p in parts]
        if any(n is None for n in nums):
            raise InputError(f"--channels must be an integer, A:B (doubling) or A:B:STEP, each {INT_RULE}; "
                             f"got {raw!r}")
        if any(n <= 0 for n in nums) or len(nums) > 3:
            raise InputError(f"--channels must be positive integers (C >= 1), got {raw!r}")
        a, b = nums[0], nums[-1] if len(nums) > 1 else nums[0]
        if len(nums) > 1 and b < a:
            raise InputError(f"--channels range {raw!r} must go up (A <= B)")
        step = nums[2] if len(nums) == 3 else None
        count = 1 if len(nums) == 1 else _range_count(a, nums[1], step)
        if len(out) + count > MAX_CHANNEL_VALUES:
            raise InputError(f"--channels is too long: {raw!r} gives {count:,} value(s), {len(out) + count:,} in all; "
                             f"at most {MAX_CHANNEL_VALUES:,}")
        if len(nums) == 1:
            out.append(a)
        elif step is not None:
            out.extend(range(a, nums[1] + 1, step))
        else:
            out.extend(a << i for i in range(count))
    return out


@click.command("kernel-size")
@click.option("--channels", "-C", "channels", multiple=True, required=True,
              help="Channel count C; repeat it, or give a range A:B (doubling) or A:B:STEP.")
@click.option("--gamma", type=float, default=2.0, show_default=True, help="γ of Eq. 12.")
@click.option("--b", "b", type=float, default=1.0, show_default=True, help="b of Eq. 12.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def kernel_size_cmd(channels, gamma, b, as_json):
    """ECA's adaptive kernel size k = ψ(C) (Eq. 12), with its derivation.

    k follows the authors' code: t = int(|(log2 C + b) / γ|); k = t if t is odd
    else t + 1. Ties of the paper's "nearest odd" are marked.
    """
    infos = [kernel_size_info(C, gamma, b) for C in parse_channels(channels)]
    if as_json:
        click.echo(json.dumps([{"C": i.C, "gamma": i.gamma, "b": i.b, "t_exact": i.t_exact, "t": i.t, "k": i.k,
                                "tie": i.tie, "k_nearest_odd": list(i.k_nearest_odd), "k_timm": i.k_timm}
                               for i in infos], indent=2))
        return
    console = make_console()
    if len(infos) == 1:
        i = infos[0]
        console.print(f"C = {i.C}: k = {i.k}")
        console.print(i.explain(), highlight=False)
        return
    table = Table(title=f"ECA kernel size k = |log2(C)/{gamma:g} + {b:g}/{gamma:g}|_odd (authors' code rule)")
    for col in ("C", "(log2 C + b)/γ", "int t", "k (code)", "nearest odd (paper)", "timm k", "note"):
        table.add_column(col, justify="right" if col != "note" else "left")
    for i in infos:
        note = []
        if i.tie:
            note.append(f"tie {i.k_nearest_odd[0]}/{i.k_nearest_odd[1]}: code takes {i.k}")
        if i.k_timm != i.k:
            note.append("timm floors at 3")
        table.add_row(str(i.C), f"{i.t_exact:.3f}", str(i.t), str(i.k), "/".join(map(str, i.k_nearest_odd)),
                      str(i.k_timm), "; ".join(note))
    console.print(table)


@click.command("verify")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the random inputs, 0 <= SEED < 2**32.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="dtype of the equality proofs (gradient checks always run in float64).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def verify_cmd(seed, dtype, as_json):
    """Prove the reference by numbers; exit 1 if any check fails.

    1 conv form == band form; 2 the gradient map dB -> dw; 3 gradient checks of
    every variant, GAP and sigmoid; 4 vectorised == plain loops; 5 parameter counts.
    """
    from eca_ref.verify import run_verify

    results = run_verify(seed=seed, dtype=dtype)
    failed = [r for r in results if not r.passed]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        console = make_console()
        table = Table(title=f"eca-ref verify (seed {seed}, {dtype})")
        for col in ("#", "check", "case", "error", "tol", "result"):
            table.add_column(col, justify="right" if col in ("#", "error", "tol") else "left")
        for r in results:
            table.add_row(str(r.proof), r.name, r.case, f"{r.error:.2e}", f"{r.tol:.0e}",
                          "[green]ok[/green]" if r.passed else "[red]FAIL[/red]")
        console.print(table)
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


COMMANDS = [kernel_size_cmd, verify_cmd]
