"""CLI commands of training: train, evaluate, ablate (thin shells over eca_ref.train).

Exit status: 0 when the command did what was asked (including ``--stop-after``), 2 for an error
the user can fix (one line on stderr; also a run directory in use by another run), 1 when training
diverged (NaN/inf loss; the last good checkpoint is kept) or a file of the run could not be written
(disk full, permission denied: one line naming the file; what was written before stays valid), 130
after Ctrl-C and 143 after SIGTERM (a checkpoint was written; continue with ``--resume``).
"""
from __future__ import annotations

import json
import sys
import time

import click
from click.core import ParameterSource
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from eca_ref.cli_console import make_console
from eca_ref.cli_types import SEED, SEED_LIST
from eca_ref.engine import ENGINES, WORKERS
from eca_ref.engine.processes import tune_allocator
from eca_ref.errors import InputError
from eca_ref.models.resnet_spec import CONV_INITS
from eca_ref.train.ablate import AblationInterrupted, ablate
from eca_ref.train.config import PRESETS, TrainConfig, preset_fields
from eca_ref.train.evaluate import evaluate_run
from eca_ref.train.gates import gate_statistics
from eca_ref.train.loop import resume, train
from eca_ref.train.rundir import RunWriteError
from eca_ref.train.runner import check_cores

_DEFAULTS = TrainConfig.__dataclass_fields__


def _default(name):
    return _DEFAULTS[name].default


def _fmt_seconds(s: float) -> str:
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def _cores_text(n: int, workers: str, engine: str = "fast") -> str:
    if engine == "reference":
        return "the reference engine on 1 core"
    if n == 1:
        return "1 core"
    return f"{n} cores ({n - 1} worker process{'es' if n > 2 else ''} + this one)" if workers == "processes" \
        else f"{n} cores (threads)"


class RichReporter:
    """Progress bar per epoch (batches, loss, accuracy, images/s, ETA) and one line per epoch."""

    def __init__(self, console: Console, label: str = ""):
        self.console = console
        self.label = f"{label} " if label else ""
        self.progress = None
        self.task = None

    def on_start(self, info):
        cfg, counts = info["config"], info["parameters"]
        what = (f"{cfg.attention}-ResNet-{cfg.depth} (width {cfg.width}): {counts['total']:,} parameters, "
                f"{counts['attention']:,} in attention")
        if info["resumed"]:
            self.console.print(f"{self.label}resuming {info['run_dir']} at epoch {info['epoch']}/{cfg.epochs}, "
                               f"step {info['step']}/{info['total_steps']}; {what}")
        else:
            self.console.print(f"{self.label}training {what}; {info['n_train']:,} train / {info['n_test']:,} test "
                               f"images from {info['data_root']}; {cfg.epochs} epochs x {info['steps_per_epoch']} "
                               f"steps of {cfg.batch_size}; run dir {info['run_dir']}; "
                               f"{_cores_text(info.get('threads', 1), info.get('workers', 'threads'), info.get('engine', 'fast'))}")

    def on_note(self, line):
        self._stop()
        click.echo(f"{self.label}{line}", err=True)

    def on_epoch_start(self, epoch, epochs, n_batches, first):
        self._stop()
        self.progress = Progress(
            TextColumn(f"{self.label}epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:6.2%}"),
            TextColumn("{task.fields[ips]:,.0f} img/s"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=n_batches, completed=first, loss=0.0, acc=0.0, ips=0.0)

    def on_batch(self, epoch, batch, n_batches, loss, acc, ips, lr):
        if self.progress is not None:
            self.progress.update(self.task, completed=batch, loss=loss, acc=acc, ips=ips)

    def on_epoch_end(self, m):
        self._stop()
        test = (f"test loss {m['test_loss']:.4f} acc {m['test_acc']:6.2%}" if m.get("test_acc") is not None
                else "test (not evaluated this epoch)")
        self.console.print(
            f"{self.label}epoch {m['epoch']:>3}  train loss {m['train_loss']:.4f} acc {m['train_acc']:6.2%}  "
            f"{test}  lr {m['lr']:.4g}  "
            f"{m['images_per_s']:,.0f} img/s  {m['seconds']:.1f} s", highlight=False)

    def _stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    close = _stop


def _threads_option(f):
    return click.option("--threads", type=int, default=None,
                        help="Accepted for compatibility: the gates come from the reference model, in this process.")(f)


def _cores_options(f):
    f = click.option("--engine", type=click.Choice(list(ENGINES)), default="fast", show_default=True,
                     help="What runs the model: the fast engine, or the plain reference code (one core, slow; "
                          "the same numbers to float32 rounding).")(f)
    f = click.option("--workers", type=click.Choice(list(WORKERS)), default="processes", show_default=True,
                     help="What runs the shards: worker processes (faster) or threads of this process "
                          "(the same results).")(f)
    return click.option("--threads", type=int, default=None,
                        help="CPU cores: a batch runs as one shard per core [default: every available core].")(f)


def _malloc_option(f):
    return click.option("--tune-malloc/--no-tune-malloc", default=True, show_default=True,
                        help="Let glibc keep freed memory for reuse (faster steps; see eca_ref.engine.processes.tune_allocator).")(f)


def _tune(on: bool) -> None:
    if on:
        tune_allocator()


def _given(ctx, name) -> bool:
    src = ctx.get_parameter_source(name)
    return src not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


@click.command("train")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="A named recipe: d20 = --depth 20 --epochs 30 --lr 0.4 --warmup 0.15; d14w24 = the same with "
                   "--depth 14 --width 24 --epochs 25 (options given explicitly win).")
@click.option("--attention", default=_default("attention"), show_default=True,
              help="Attention variant by registry name (none, se, eca, ...).")
@click.option("--depth", type=int, default=_default("depth"), show_default=True, help="ResNet depth, 6n+2.")
@click.option("--width", type=int, default=_default("width"), show_default=True, help="Channels of the first stage.")
@click.option("--k", type=int, default=None, help="ECA kernel size for every block (default: kernel_size(C) per block).")
@click.option("--epochs", type=int, default=_default("epochs"), show_default=True)
@click.option("--seed", type=SEED, default=_default("seed"), show_default=True, help="0 <= SEED < 2**32.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (new).")
@click.option("--resume", "resume_dir", type=click.Path(), default=None,
              help="Continue the run in this directory with its saved config.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="CIFAR-10 location (else, with --resume, where the run recorded it; else $ECA_REF_DATA, "
                   "else ~/.cache/eca-ref).")
@click.option("--limit", type=int, default=None, help="Use only the first N train and N test images.")
@click.option("--stop-after", type=int, default=None, help="End this invocation after N epochs (checkpoint written).")
@click.option("--test-every", type=int, default=1, show_default=True,
              help="Evaluate on the test set after every N-th epoch and after the last (each pass costs 6-9% "
                   "of an epoch; the weights are the same whatever N).")
@click.option("--lr", type=float, default=_default("lr"), show_default=True, help="Peak learning rate.")
@click.option("--batch-size", type=int, default=_default("batch_size"), show_default=True)
@click.option("--schedule", type=click.Choice(["onecycle", "cosine"]), default=_default("schedule"), show_default=True)
@click.option("--warmup", type=float, default=_default("warmup"), show_default=True,
              help="Fraction of the steps spent rising to the peak learning rate.")
@click.option("--momentum", type=float, default=_default("momentum"), show_default=True)
@click.option("--weight-decay", type=float, default=_default("weight_decay"), show_default=True,
              help="L2 on conv and linear weights only.")
@click.option("--label-smoothing", type=float, default=_default("label_smoothing"), show_default=True)
@click.option("--augment/--no-augment", default=_default("augment"), show_default=True,
              help="Random crop (4-pixel padding) and horizontal flip.")
@click.option("--zero-init-residual/--no-zero-init-residual", default=_default("zero_init_residual"), show_default=True,
              help="Start each block's second BN weight at 0, so every block starts as its shortcut.")
@click.option("--init", type=click.Choice(list(CONV_INITS)), default=_default("init"), show_default=True,
              help="Conv weights: Kaiming normal (fan out) or PyTorch's Conv2d default (uniform, std 1/sqrt(3 fan_in)).")
@_cores_options
@_malloc_option
@click.pass_context
def train_cmd(ctx, out, resume_dir, data_dir, stop_after, test_every, threads, workers, engine, tune_malloc, preset,
              **opts):
    """Train the tiny ECA-ResNet on CIFAR-10 (or continue a run with --resume)."""
    _tune(tune_malloc)
    # the fields set explicitly: the preset's, unless given as options (the defaults are TrainConfig's)
    fields = preset_fields(preset, **{k: v for k, v in opts.items() if _given(ctx, k)})
    cores_opts = {"threads": threads, "workers": workers, "engine": engine}
    console = make_console(highlight=False, soft_wrap=True)
    reporter = RichReporter(console)
    t0 = time.perf_counter()
    try:
        if resume_dir is not None:
            if out is not None and str(out).rstrip("/") != str(resume_dir).rstrip("/"):
                raise InputError(f"--out {out} contradicts --resume {resume_dir}: a resumed run stays in its directory")
            result = resume(resume_dir, data_dir=data_dir, stop_after=stop_after, reporter=reporter, expect=fields,
                            test_every=test_every, **cores_opts)
        else:
            if out is None:
                raise InputError("--out is required (the run directory), or give --resume RUN_DIR")
            result = train(TrainConfig(**fields), out, data_dir=data_dir, stop_after=stop_after, reporter=reporter,
                           test_every=test_every, **cores_opts)
    except KeyboardInterrupt as exc:
        reporter.close()
        signum = getattr(exc, "signum", 2)
        click.echo(f"Stopped at once by {'SIGTERM' if signum == 15 else 'Ctrl-C'}; the last checkpoint written, "
                   "if any, is kept.", err=True)
        sys.exit(128 + signum)
    except RunWriteError as exc:
        reporter.close()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    finally:
        reporter.close()
    elapsed = time.perf_counter() - t0
    run_total = sum(m["seconds"] for m in result.metrics)
    if result.status == "diverged":
        click.echo(f"Error: {result.message}", err=True)
        sys.exit(1)
    if result.status == "interrupted":
        sigterm = result.signal == "SIGTERM"
        what = result.message[:1].upper() + result.message[1:] if sigterm else f"Interrupted: {result.message}"
        click.echo(f"{what}. Continue with: eca-ref train --resume {result.run_dir}", err=True)
        sys.exit(143 if sigterm else 130)
    if result.status == "stopped":
        console.print(f"{result.message}; continue with: eca-ref train --resume {result.run_dir}")
    else:
        console.print(result.message)
    console.print(f"total time {_fmt_seconds(elapsed)} (this invocation); epochs so far {result.epoch}/"
                  f"{result.config.epochs}, {_fmt_seconds(run_total)} of training and evaluation")


@click.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--data-dir", type=click.Path(), default=None,
              help="CIFAR-10 location (else where the run recorded it, else $ECA_REF_DATA).")
@click.option("--limit", type=int, default=None, help="Evaluate on the first N test images only.")
@click.option("--tta", is_flag=True, help="Test-time augmentation: average the logits of each image and its mirror.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_cores_options
def evaluate_cmd(run_dir, data_dir, limit, tta, as_json, threads, workers, engine):
    """Test accuracy, per-class accuracy and the confusion matrix of a saved run."""
    r = evaluate_run(run_dir, data_dir=data_dir, limit=limit, tta=tta, threads=threads, workers=workers, engine=engine)
    if r.data_note:
        click.echo(r.data_note, err=True)
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=1))
        return
    console = make_console(highlight=False, soft_wrap=True)
    c = r.config
    console.print(f"{r.run_dir}: {c['attention']}-ResNet-{c['depth']} width {c['width']}, epoch {r.epoch}/{c['epochs']}; "
                  f"test accuracy [bold]{r.accuracy:.2%}[/bold] on {r.n:,} images (loss {r.loss:.4f})"
                  f"{'; logits averaged with the mirror images (--tta)' if r.tta else ''}")
    per = Table(title="Per-class accuracy")
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    per.add_column("correct / images", justify="right")
    for i, name in enumerate(r.class_names):
        per.add_row(name, f"{r.per_class[name]:.2%}" if r.confusion[i].sum() else "-",
                    f"{r.confusion[i, i]} / {r.confusion[i].sum()}")
    console.print(per)
    cm = Table(title="Confusion matrix (rows: true class, columns: predicted)", box=box.SIMPLE_HEAD)
    cm.add_column("", no_wrap=True)
    for name in r.class_names:
        cm.add_column(name[:4], justify="right", no_wrap=True, min_width=4)
    for i, name in enumerate(r.class_names):
        cm.add_row(name, *(f"[bold]{v}[/bold]" if i == j else str(v) for j, v in enumerate(r.confusion[i])))
    console.print(cm)


@click.command("gates")
@click.argument("run_dir", type=click.Path())
@click.option("--data-dir", type=click.Path(), default=None,
              help="CIFAR-10 location (else where the run recorded it, else $ECA_REF_DATA).")
@click.option("--limit", type=int, default=None, help="Use the first N test images only.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics (with the class-mean gates) as JSON.")
@_threads_option
def gates_cmd(run_dir, data_dir, limit, as_json, threads):
    """What the attention learned: each block's gates averaged per class on the test split."""
    check_cores(threads)    # the gates come from the reference model (eca_ref.models.attention_gates)
    g = gate_statistics(run_dir, data_dir=data_dir, limit=limit)
    if g.data_note:
        click.echo(g.data_note, err=True)
    if as_json:
        click.echo(json.dumps(g.to_dict(), indent=1))
        return
    console = make_console(highlight=False, soft_wrap=True)
    console.print(f"{g.run_dir}: {g.attention} gates on {g.n:,} test images")
    t = Table(title="Gate per block: mean, and how differently the classes open the channels")
    for col in ("block", "C", "hp", "mean gate", "class spread", "most class-specific channel"):
        t.add_column(col, justify="left" if col in ("block", "hp", "most class-specific channel") else "right")
    for b in g.blocks:
        hp = ", ".join(f"{k}={v}" for k, v in b.hp.items())
        t.add_row(b.name, str(b.channels), hp, f"{b.mean:.3f}", f"{b.class_spread:.4f}",
                  f"#{b.top_channel}: most open for {b.top_high}, least for {b.top_low}")
    console.print(t)
    console.print("class spread = mean over channels of the standard deviation, across classes, of the "
                  "class-mean gate")


def _csv(text: str, kind=str, name: str = "") -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise InputError(f"{name} must be a comma-separated list of {kind.__name__}s, got {text!r}") from None


def _k_text(row) -> str:
    """The k column of the ablation table: the swept k, and each block's kernel where Eq. 12 chose it."""
    if row.k is None:
        return "-"
    return f"adaptive ({', '.join(map(str, row.kernels))})" if row.k == "adaptive" else str(row.k)


@click.command("ablate")
@click.option("--attention", default="none,se,eca", show_default=True, help="Comma-separated variant names.")
@click.option("--epochs", type=int, default=_default("epochs"), show_default=True, help="Epochs per run (same for all).")
@click.option("--seeds", type=SEED_LIST, default="0,1", show_default=True,
              help="Comma-separated seeds, each 0 <= seed < 2**32.")
@click.option("--k", "ks", default=None,
              help="Kernel sizes to sweep, comma-separated odd numbers and 'adaptive' (Eq. 12 per block), e.g. "
                   "1,3,5,7,9,adaptive: each variant with a kernel trains once per k.")
@click.option("--depth", type=int, default=_default("depth"), show_default=True)
@click.option("--width", type=int, default=_default("width"), show_default=True)
@click.option("--limit", type=int, default=None, help="Use only the first N train and N test images.")
@click.option("--lr", type=float, default=_default("lr"), show_default=True)
@click.option("--batch-size", type=int, default=_default("batch_size"), show_default=True)
@click.option("--test-every", type=int, default=1, show_default=True,
              help="Evaluate on the test set after every N-th epoch and after the last.")
@click.option("--data-dir", type=click.Path(), default=None, help="CIFAR-10 location.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/ablate", show_default=True,
              help="Folder for the runs (one per variant, k and seed; reused when rerun).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (progress goes to stderr).")
@_cores_options
@_malloc_option
def ablate_cmd(attention, epochs, seeds, ks, depth, width, limit, lr, batch_size, test_every, data_dir, out, as_json,
               threads, workers, engine, tune_malloc):
    """Train each attention variant (and kernel size) under the same budget; params added, test accuracy mean ± std."""
    _tune(tune_malloc)
    variants = _csv(attention, str, "--attention")
    k_list = None if ks is None else [t if t == "adaptive" else _csv(t, int, "--k")[0] for t in _csv(ks, str, "--k")]
    seed_list = list(seeds)
    console = make_console(stderr=as_json, highlight=False, soft_wrap=True)
    reporters = []

    def factory(v, s):
        reporters.append(RichReporter(console, label=escape(f"[{v} seed {s}]")))   # not rich markup
        return reporters[-1]

    t0 = time.perf_counter()
    try:
        r = ablate(variants, seed_list, epochs=epochs, out=out, ks=k_list, test_every=test_every, data_dir=data_dir,
                   reporter_factory=factory, threads=threads, workers=workers, engine=engine,  # one block of cores for every run
                   depth=depth, width=width, limit=limit, lr=lr, batch_size=batch_size)
    except AblationInterrupted as exc:
        click.echo(f"Interrupted: {exc}", err=True)
        sys.exit(143 if "SIGTERM" in str(exc) else 130)
    except KeyboardInterrupt as exc:
        click.echo("Stopped at once; rerun the same command to continue.", err=True)
        sys.exit(128 + getattr(exc, "signum", 2))
    except RunWriteError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    finally:
        for rep in reporters:
            rep.close()
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=1))
        return
    t = Table(title=f"Ablation: depth {depth}, width {width}, {epochs} epochs"
                    f"{f' on {limit:,} images' if limit else ''}, seeds {', '.join(map(str, seed_list))}")
    t.add_column("attention")
    if k_list is not None:
        t.add_column("k (each block)")
    t.add_column("parameters", justify="right")
    t.add_column("added", justify="right")
    t.add_column("test acc per seed", justify="right")
    t.add_column("mean ± std", justify="right")
    t.add_column("time", justify="right")
    for row in r.rows:
        kcol = [] if k_list is None else [_k_text(row)]
        t.add_row(row.variant, *kcol, f"{row.params_total:,}", f"{row.params_added:,}",
                  " ".join(f"{a:.2%}" if a == a else "diverged" for a in row.accs),
                  f"{row.mean:.2%} ± {row.std:.2%}" if len(row.accs) > 1 else f"{row.mean:.2%}",
                  _fmt_seconds(row.seconds))
    console.print(t)
    console.print(f"total time {_fmt_seconds(time.perf_counter() - t0)}; runs in {r.out}")


COMMANDS = [train_cmd, evaluate_cmd, gates_cmd, ablate_cmd]
