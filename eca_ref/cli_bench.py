"""``eca-ref bench``: the speed of a training step and of the ECA module, against PyTorch and the memory floor."""
from __future__ import annotations

import json

import click
from click.core import ParameterSource

from eca_ref.attention import VARIANTS
from eca_ref.bench import (ECA_SHAPES, TORCH_MISSING, bench_eca, bench_train_step, check_eca_shapes, environment,
                           has_torch, tune_allocator)
from eca_ref.cli_types import ascii_int
from eca_ref.engine import ENGINES, WORKERS
from eca_ref.engine.blas import available_cores
from eca_ref.errors import InputError
from eca_ref.models import ResNetConfig
from eca_ref.validation import check_int


def _parse_shape(text: str) -> tuple:
    dims = [ascii_int(p) for p in text.lower().split("x")]
    if len(dims) != 4 or not all(d is not None and d > 0 for d in dims):
        raise InputError(f"--eca-shape must be four positive integers NxCxHxW in ASCII digits, e.g. 128x64x8x8; "
                         f"got {text!r}")
    return tuple(dims)


def _ms(d):
    return f"{d['median_ms']:.2f}"


def render_bench(result: dict, console=None) -> None:
    """Print the tables of :func:`run_bench`'s result with rich."""
    from eca_ref.cli_console import make_console
    from rich.table import Table

    console = console or make_console()
    env = result["environment"]
    threads = (result.get("train_step") or {}).get("threads", result.get("threads"))
    workers = (result.get("train_step") or {}).get("workers", "threads")
    engine = (result.get("train_step") or {}).get("engine", "fast")
    how = ("the reference code, one process" if engine == "reference" else
           f"the fast engine, one shard per {'process' if workers == 'processes' else 'thread'}")
    console.print(f"numpy {env['numpy']}, torch {env['torch'] or 'not installed'}, {env['cpus']} CPUs "
                  f"({env['cores']} available); training step: {threads} cores for eca-ref ({how}) and {threads} "
                  f"threads for PyTorch; ECA module: one thread each; load average {env['load_avg']}, {env['date']}")
    step = result.get("train_step")
    if step:
        c = step["config"]
        t = Table(title=f"training step: depth {c['depth']}, width {c['width']}, {c['attention']}, batch {c['batch']}, "
                        f"float32 (median of {step['numpy']['repeats']})")
        for col in ("implementation", "median ms", "min ms", "images/s"):
            t.add_column(col, justify="right" if col != "implementation" else "left")
        t.add_row(f"eca-ref (NumPy, {engine} engine)", _ms(step["numpy"]), f"{step['numpy']['min_ms']:.2f}",
                  f"{step['numpy']['images_per_s']:.0f}")
        if "torch" in step:
            t.add_row("PyTorch", _ms(step["torch"]), f"{step['torch']['min_ms']:.2f}",
                      f"{step['torch']['images_per_s']:.0f}")
            t.add_row("ratio NumPy / PyTorch", f"{step['ratio']:.2f}", "", "", style="bold")
        console.print(t)
    rows = result.get("eca")
    if rows:
        t = Table(title="ECA module alone, float32 (median ms); B = mean over H, W + x * s")
        cols = ["shape", "k", "B", "F", "F/B", "FB", "FB/B"]
        if "torch_forward" in rows[0]:
            cols += ["torch F", "torch FB", "FB/torch"]
        for col in cols:
            t.add_column(col, justify="right")
        for r in rows:
            cells = ["x".join(map(str, r["shape"])), str(r["k"]), _ms(r["B"]), _ms(r["forward"]),
                     f"{r['forward_over_B']:.2f}", _ms(r["forward_backward"]), f"{r['forward_backward_over_B']:.2f}"]
            if "torch_forward" in r:
                cells += [_ms(r["torch_forward"]), _ms(r["torch_forward_backward"]),
                          f"{r['forward_backward_over_torch']:.2f}"]
            t.add_row(*cells)
        console.print(t)
        console.print("F = forward, FB = forward + backward; targets: F <= 1.2 B, FB <= 3 B, "
                      "FB no slower than PyTorch autograd (FB/torch <= 1)")
    for note in result.get("notes", []):
        console.print(note, highlight=False, markup=False)


def run_bench(*, repeats=20, warmup=3, batch=128, depth=8, width=16, attention="eca", with_torch=True,
              step=True, eca=True, tune_malloc=True, eca_shapes=None, threads=None, workers="processes",
              engine="fast") -> dict:
    """Run the benchmarks and return one JSON-ready dict (the plain function behind ``eca-ref bench``)."""
    cfg = ResNetConfig(depth=depth, width=width, attention=attention)  # checks the values
    threads = available_cores() if threads is None else check_int(threads, "threads", min_value=1)
    eca_shapes = check_eca_shapes(eca_shapes or ECA_SHAPES)  # sizes checked before the step runs
    result = {"environment": environment(), "allocator_tuned": bool(tune_malloc and tune_allocator()),
              "threads": threads}
    if with_torch and not has_torch():
        result["notes"] = ["PyTorch not installed: skipped"]
    if step:
        result["train_step"] = bench_train_step(cfg, batch=batch, repeats=repeats, warmup=warmup,
                                                with_torch=with_torch, threads=threads, workers=workers,
                                                engine=engine)
    if eca:
        result["eca"] = bench_eca(eca_shapes, repeats=repeats, warmup=warmup, with_torch=with_torch)
    return result


@click.command("bench")
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True, help="Timed runs (median).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed runs first.")
@click.option("--batch", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--depth", type=int, default=8, show_default=True, help="6n + 2.")
@click.option("--width", type=int, default=16, show_default=True)
@click.option("--attention", type=click.Choice(list(VARIANTS)), default="eca", show_default=True)
@click.option("--torch/--no-torch", "with_torch", default=True,
              help="Time PyTorch too [default: when installed; --torch without PyTorch is an error].")
@click.option("--step/--no-step", default=True, help="The training-step benchmark.")
@click.option("--eca/--no-eca", default=True, help="The ECA-module benchmark.")
@click.option("--tune-malloc/--no-tune-malloc", default=True, show_default=True,
              help="Let glibc keep freed memory for reuse (see eca_ref.engine.processes.tune_allocator).")
@click.option("--eca-shape", "eca_shapes", multiple=True, metavar="NxCxHxW",
              help="Input shape of the ECA benchmark (repeatable; default 128x64x8x8 and 32x256x56x56).")
@click.option("--threads", type=int, default=None,
              help="CPU cores for eca-ref and threads for PyTorch [default: every available core].")
@click.option("--workers", type=click.Choice(list(WORKERS)), default="processes", show_default=True,
              help="What runs eca-ref's shards of the training step: worker processes or threads.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default="fast", show_default=True,
              help="The training step on the fast engine, or on the plain reference code (slow; a figure).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def bench(ctx, repeats, warmup, batch, depth, width, attention, with_torch, step, eca, tune_malloc, eca_shapes, threads,
          workers, engine, as_json):
    """Time a training step (NumPy vs PyTorch) and the ECA module (vs B and PyTorch)."""
    shapes = [_parse_shape(s) for s in eca_shapes] or None
    if with_torch and ctx.get_parameter_source("with_torch") == ParameterSource.COMMANDLINE and not has_torch():
        raise InputError(f"--torch: {TORCH_MISSING}; or leave out --torch")
    result = run_bench(repeats=repeats, warmup=warmup, batch=batch, depth=depth, width=width, attention=attention,
                       with_torch=with_torch, step=step, eca=eca, tune_malloc=tune_malloc, eca_shapes=shapes,
                       threads=threads, workers=workers, engine=engine)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        render_bench(result)


COMMANDS = [bench]
