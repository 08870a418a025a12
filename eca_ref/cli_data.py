"""CLI commands of the data layer: ``eca-ref data download`` and ``eca-ref data info``.

Thin shells over :func:`eca_ref.data.download_cifar10` and :func:`eca_ref.data.data_info`.
"""
from __future__ import annotations

import click

from eca_ref.data.formats import FORMATS, OFFICIAL_BASE_URL

_root_option = click.option(
    "--root", "--data-dir", "root", type=click.Path(file_okay=True, dir_okay=True), default=None,
    help="Data folder (default: $ECA_REF_DATA, else ~/.cache/eca-ref).")


@click.group("data")
def data():
    """CIFAR-10: download the official archive, or show what is there."""


@data.command("download")
@_root_option
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="binary", show_default=True,
              help="Which official archive: binary (records, fastest to load) or python (pickled batches).")
@click.option("--extract/--no-extract", default=False, show_default=True,
              help="Also extract the batch folder next to the archive (loads faster than the archive).")
@click.option("--url", "base_url", default=OFFICIAL_BASE_URL, show_default=True, envvar="ECA_REF_DATA_URL",
              help="Base URL to fetch the archive from, e.g. a mirror (also $ECA_REF_DATA_URL).")
@click.option("--md5", default=None, help="Expected MD5 of the archive (default: the official one).")
@click.option("--size", type=int, default=None,
              help="Expected size in bytes (default: the official one when --md5 is not given).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download(root, fmt, extract, base_url, md5, size, quiet):
    """Download the official CIFAR-10 archive, verify its size and MD5, then move it into place.

    A second call finds the verified archive and does nothing.
    """
    from eca_ref.data import download_cifar10

    result = download_cifar10(root, format=fmt, base_url=base_url, md5=md5, size=size, progress=not quiet,
                              extract=extract)
    verb = "downloaded and verified" if result.downloaded else "already present, verified; nothing to do"
    click.echo(f"{result.path}: {verb}")
    if result.extracted is not None:
        click.echo(f"extracted: {result.extracted}")


@data.command("info")
@_root_option
def info(root):
    """Show the CIFAR-10 copies under the data folder: format, checksum, image counts."""
    from rich.console import Console
    from rich.table import Table

    from eca_ref.data import data_info
    from eca_ref.data.load import how_to_get_data

    report = data_info(root)
    click.echo(f"data root: {report.root} (from {report.origin})")
    if not report.sources:
        click.echo(f"no CIFAR-10 data found. {how_to_get_data(report.root)}")
        return
    table = Table(show_lines=False)
    for col in ("copy", "format", "verified", "train", "test", "status"):
        table.add_column(col, overflow="fold")
    for s in report.sources:
        name = s.source.path.name + ("/" if s.source.kind == "folder" else "")
        table.add_row(name, s.format or "?", s.verified, str(s.counts.get("train", "-")),
                      str(s.counts.get("test", "-")), "ok" if s.ok else "unusable")
    Console(width=120).print(table)
    for s in report.sources:
        if s.md5 is not None and not s.official:
            click.echo(f"{s.source.path.name}: MD5 {s.md5} is not the official archive's (readable, but not verified)")
        if not s.ok:
            click.echo(f"unusable: {s.error}")


COMMANDS = [data]
