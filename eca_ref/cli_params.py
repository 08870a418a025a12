"""CLI command ``compare-params``: parameter counts per module and per network.

A thin shell over :func:`eca_ref.tables.compare_variants` (one module with C
channels), :func:`eca_ref.tables.compare_network` (a network of the paper) and
:func:`eca_ref.tables.compare_cifar` (the CIFAR net of ``eca-ref train``).
"""
from __future__ import annotations

import json

import click
from rich.table import Table

from eca_ref.cli_console import make_console
from eca_ref.cli_types import check_ascii
from eca_ref.errors import InputError
from eca_ref.models.architectures import network_key
from eca_ref.models.networks import NETWORKS, UNIT, get_network
from eca_ref.tables import PAPER_CONVENTION, compare_cifar, compare_network, compare_variants, paper_flops_unit


def _int(n) -> str:
    return "—" if n is None else f"{n:,}"


def _notes(rows):
    """Short markers for the note column and the footnotes printed under the table."""
    marks, notes = [], []
    for r in rows:
        if r["note"]:
            notes.append(r["note"])
            marks.append(f"[{len(notes)}]")
        else:
            marks.append("")
    return marks, notes


def _print_notes(notes, console):
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", highlight=False, markup=False)


def _print_variants(rows, console):
    C = rows[0]["C"]
    flops = "flops" in rows[0]
    where = f"; MACs on a {C} x {rows[0]['flops']['H']} x {rows[0]['flops']['W']} map" if flops else ""
    table = Table(title=f"One attention module on C = {C} channels "
                        f"(Top-1/Top-5: the paper's ResNet-50 on ImageNet{where})")
    cols = [("variant", "left"), ("f(y)", "left"), ("#Param", "left"), ("params", "right")]
    if flops:
        cols += [("f MACs", "right"), ("GAP adds", "right"), ("rescale muls", "right")]
    for col, just in cols + [("Top-1", "right"), ("Top-5", "right"), ("paper setting", "left"), ("note", "left")]:
        table.add_column(col, justify=just)
    marks, notes = _notes(rows)
    for r, mark in zip(rows, marks):
        f = r.get("flops")
        extra = [] if not flops else ["—", "—", "—"] if f is None else [_int(f["f"]), _int(f["gap"]), _int(f["scale"])]
        table.add_row(r["label"], r["formula"], r["param_formula"], _int(r["params"]), *extra,
                      "" if r["top1"] is None else f"{r['top1']:.2f}",
                      "" if r["top5"] is None else f"{r['top5']:.2f}",
                      r["paper_setting"] or "", mark)
    console.print(table)
    if flops:
        console.print("f MACs: multiply-accumulates of f on y (one per weight applied; k C for a kernel sliding "
                      "over the channels). Besides: the sigmoid (C), listed in --json.", highlight=False)
    _print_notes(notes, console)


def _versus(value, paper, fmt) -> str:
    if paper is None:
        return ""
    ok = value is not None and abs(value - paper) < 1e-9
    return f"{paper:{fmt}} " + ("[green]match[/green]" if ok else "[red]differs[/red]")


def _print_network(rows, console):
    net = rows[0]["network"]
    title = get_network(net).title
    f0 = next((r["flops"] for r in rows if r.get("flops")), None)
    unit_name, _, digits = paper_flops_unit(net)
    caption = None
    if f0 is not None:
        caption = (f"MACs: multiply-accumulates for one {f0['H']} x {f0['W']} image, conv and fc layers (backbone) "
                   f"and the modules' f (added); FLOPs = 2 MACs by the textbook convention. {unit_name}FLOPs: the "
                   f"paper's convention, thop as of 2019 ({PAPER_CONVENTION}: conv MACs, Linear 2n-1 per output, "
                   f"BN 4n, ReLU n, pooling, the modules' GAP) in units of {'2^30' if unit_name == 'G' else '2^20'}"
                   f". --json: every tool's total and the element counts (docs/parameters.md, FLOPs).")
    table = Table(title=f"{title}: one attention module per block (M = 2^20 = {UNIT:,} parameters)", caption=caption)
    cols = [("variant", "left"), ("params", "right"), ("added", "right"), ("M", "right"), ("paper", "right")]
    if f0 is not None:
        cols += [("backbone MACs", "right"), ("added MACs", "right"), (f"{unit_name}FLOPs", "right"),
                 ("paper", "right")]
    for col, just in cols + [("note", "left")]:
        table.add_column(col, justify=just)
    marks, notes = _notes(rows)
    for r, mark in zip(rows, marks):
        extra = []
        if f0 is not None:
            f = r.get("flops")
            extra = ["—"] * 4 if f is None else [
                _int(f["backbone_macs"]), _int(f["attention_macs"]), f"{f['paper_value']:.{digits}f}",
                _versus(f["paper_value"], f["paper"], f".{digits}f")]
        table.add_row(r["label"], _int(r["params"]), _int(r["params_added"]),
                      "—" if r["M"] is None else f"{r['M']:.2f}", _versus(r["M"], r["paper_M"], ".2f"), *extra, mark)
    console.print(table)
    _print_notes(notes, console)


def _print_cifar(rows, console):
    f0 = rows[0].get("flops")
    caption = None
    if f0 is not None:
        caption = (f"MACs: multiply-accumulates for one {f0['H']} x {f0['W']} image, conv and fc layers (backbone) and "
                   f"the modules' f (added); FLOPs = 2 MACs by the textbook convention; {PAPER_CONVENTION}: the paper's "
                   "convention (thop as of 2019, in operations). --json: every tool's total and the element counts "
                   "(docs/parameters.md, FLOPs).")
    table = Table(title=f"{rows[0]['network']}: the CIFAR net of eca-ref train, one attention module per block",
                  caption=caption)
    cols = [("variant", "left"), ("params", "right"), ("added", "right")]
    if f0 is not None:
        cols += [("backbone MACs", "right"), ("added MACs", "right"), ("MACs", "right"), (PAPER_CONVENTION, "right")]
    for col, just in cols:
        table.add_column(col, justify=just)
    for r in rows:
        f = r.get("flops")
        extra = [] if f is None else [_int(f["backbone_macs"]), _int(f["attention_macs"]),
                                      _int(f["conventions"]["macs"]), _int(f["conventions"][PAPER_CONVENTION])]
        table.add_row(r["label"], _int(r["params"]), _int(r["params_added"]), *extra)
    console.print(table)


def _size(text, default):
    """--size HxW (or one number for a square) as (H, W)."""
    if text is None:
        return default
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) > 2 or not all(p.isdigit() and p.isascii() and int(p) > 0 for p in parts):
        raise InputError(f"--size must be H x W in positive integers, e.g. 224x224 or 56, got {text!r}")
    return int(parts[0]), int(parts[-1])


@click.command("compare-params")
@click.option("--channels", "-C", "channels", type=int, default=None,
              help="Channel count C of the one-module table [default: 256].")
@click.option("--reduction", "-r", type=int, default=None,
              help="SE's reduction ratio r [default: 16; with --network the paper's: 16 for ResNets, "
                   "8 for MobileNetV2].")
@click.option("--groups", "-g", default=None,
              help="SE-GC groups G (an integer or C/d): an extra row beside the paper's G = 16, C/16, C/8.")
@click.option("-k", "k", type=int, default=None,
              help="ECA kernel size (odd) [default: Eq. 12 for the one-module table; the fixed-k row of "
                   "--network uses 3].")
@click.option("--network", "-n", default=None,
              help=f"Count a whole network: {', '.join(NETWORKS)}, or cifar (the net of eca-ref train; "
                   "--depth, --width).")
@click.option("--depth", type=int, default=None, help="With --network cifar: 6n + 2 layers [default: 8].")
@click.option("--width", type=int, default=None, help="With --network cifar: channels of the first stage "
                                                       "[default: 16].")
@click.option("--stage-k", "stage_k", default=None,
              help="With --network: kernel sizes per stage, e.g. 3,5,5,7 [default: the authors' released ones].")
@click.option("--placement", default=None,
              help="With --network mobilenetv2: output (default, the authors') or expanded.")
@click.option("--flops", is_flag=True,
              help="Add multiply-accumulates: the network's (backbone and added by the attention) and the paper's "
                   "GFLOPs convention; with -C, the module's on a --size map.")
@click.option("--size", default=None,
              help="With --flops: H x W of the input image with --network [default: 224x224; cifar: 32x32], of "
                   "the module's map with -C [default: 56x56, ResNet-50's first stage].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects instead of a table.")
def compare_params_cmd(channels, reduction, groups, k, network, depth, width, stage_k, placement, flops, size,
                       as_json):
    """Parameter and FLOP counts of every attention variant, per module or per network.

    Without --network: one module on --channels C, every variant with its f(y), its
    #Param formula, the exact count and the paper's Top-1/Top-5. With --network: the
    network's total for plain and every variant (ECA with k by Eq. 12, k = 3 and
    per-stage kernels), exact and in the paper's units of 2^20, beside the paper's
    Table 3. With --network cifar: the net of eca-ref train, each variant as
    training gives it (SE r = min(16, C), SE-GC G = gcd(16, C), k by Eq. 12 or -k).
    """
    check_ascii(groups, "--groups")  # numbers in ASCII digits, the rule of every integer option
    check_ascii(stage_k, "--stage-k")
    if size is not None and not flops:
        raise InputError("--size needs --flops")
    if network is not None:
        key = network_key(network)   # the paper's names and cifar, read alike ('ResNet-50', 'CIFAR')
        if key != "cifar" and key not in NETWORKS:
            raise InputError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}, cifar")
        network = "cifar" if key == "cifar" else network
    if (depth is not None or width is not None) and network != "cifar":
        raise InputError("--depth and --width need --network cifar")
    if network == "cifar":
        given = [o for o, v in (("--channels", channels), ("--reduction", reduction), ("--groups", groups),
                                ("--stage-k", stage_k), ("--placement", placement)) if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} cannot be combined with --network cifar: its variants take the "
                             "settings of eca-ref train (SE r = min(16, C), SE-GC G = gcd(16, C); -k sets the kernel)")
        rows = compare_cifar(8 if depth is None else depth, 16 if width is None else width, k=k,
                             hw=_size(size, (32, 32)) if flops else None)
    elif network is None:
        if stage_k is not None or placement is not None:
            raise InputError("--stage-k and --placement need --network")
        rows = compare_variants(256 if channels is None else channels, reduction=reduction, groups=groups, k=k,
                                hw=_size(size, (56, 56)) if flops else None)
    else:
        if channels is not None:
            raise InputError("--channels sets the one-module table; it cannot be combined with --network")
        rows = compare_network(network, reduction=reduction, groups=groups, k=k, stage_k=stage_k,
                               placement="output" if placement is None else placement,
                               hw=_size(size, (224, 224)) if flops else None)
    if as_json:
        # Only rows that apply: every object has integer params / params_added (settings that
        # cannot fit this network, e.g. G = 16 on 24 channels, are listed with a note in the table).
        click.echo(json.dumps([r for r in rows if r["params"] is not None], indent=2, ensure_ascii=False))
        return
    console = make_console()
    if network is None:
        _print_variants(rows, console)
    elif network == "cifar":
        _print_cifar(rows, console)
    else:
        _print_network(rows, console)


COMMANDS = [compare_params_cmd]
