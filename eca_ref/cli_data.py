"""CLI commands of the data layer: ``eca-ref data download`` and ``eca-ref data info``.

Thin shells over :func:`eca_ref.data.download_cifar10` and :func:`eca_ref.data.data_info`.

Exit status: 0 done; 1 the system refused (a full disk, no permission, a read-only or vanished folder,
no memory: :class:`~eca_ref.data.faults.DataIOError`), or ``data info`` found no usable copy; 2 a bad
option or a bad file (one line on stderr, as for every command).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from eca_ref.data.download import check_md5_option, check_size_option
from eca_ref.data.faults import DataIOError
from eca_ref.data.formats import FORMATS, OFFICIAL_BASE_URL
from eca_ref.errors import InputError

_root_option = click.option(
    "--root", "--data-dir", "root", type=click.Path(file_okay=True, dir_okay=True), default=None,
    help="Data folder (default: $ECA_REF_DATA, else ~/.cache/eca-ref).")


@contextmanager
def _system_faults():
    """A DataIOError as one line on stderr and exit status 1 (the files or options were fine)."""
    try:
        yield
    except DataIOError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(DataIOError.exit_code)


def _checked(check):
    """A click callback running ``check`` on a given value, a refused one as a usage error (exit 2)."""
    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return check(value)
        except InputError as exc:  # "--md5 must be ...": click names the option itself
            message = str(exc)
            raise click.BadParameter(message[message.index("must"):]) from None
    return callback


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
@click.option("--md5", default=None, callback=_checked(check_md5_option),
              help="Expected MD5 of the archive, 32 hex digits (default: the official one).")
@click.option("--size", type=int, default=None, callback=_checked(check_size_option),
              help="Expected size in bytes, a positive integer (default: the official one when --md5 is not given).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download(root, fmt, extract, base_url, md5, size, quiet):
    """Download the official CIFAR-10 archive, verify its size and MD5, then move it into place.

    A second call finds the verified archive and does nothing.
    """
    from eca_ref.data import download_cifar10

    with _system_faults():
        result = download_cifar10(root, format=fmt, base_url=base_url, md5=md5, size=size, progress=not quiet,
                                  extract=extract)
    verb = "downloaded and verified" if result.downloaded else "already present, verified; nothing to do"
    click.echo(f"{result.path}: {verb}")
    if result.extracted is not None:
        click.echo(f"extracted: {result.extracted}")


@data.command("info")
@_root_option
def info(root):
    """Show the CIFAR-10 copies under the data folder: format, checksum, image counts.

    Every file of every copy is checked (record size, 10,000 images per batch file, labels 0-9, the
    meta file). Exits 1 when no usable copy was found.
    """
    from eca_ref.cli_console import make_console
    from rich.table import Table

    from eca_ref.data import data_info
    from eca_ref.data.load import how_to_get_data

    with _system_faults():
        report = data_info(root)
    click.echo(f"data root: {report.root} (from {report.origin})")
    if not report.sources:
        click.echo(f"no CIFAR-10 data found. {how_to_get_data(report.root)}")
        sys.exit(1)
    table = Table(show_lines=False)
    for col in ("copy", "format", "verified", "train", "test", "status"):
        table.add_column(col, overflow="fold")
    for s in report.sources:
        name = s.source.path.name + ("/" if s.source.kind == "folder" else "")
        table.add_row(name, s.format or "?", s.verified, str(s.counts.get("train", "-")),
                      str(s.counts.get("test", "-")), "ok" if s.ok else "unusable")
    make_console().print(table)
    for s in report.sources:
        if s.md5 is not None and not s.official:
            click.echo(f"{s.source.path.name}: MD5 {s.md5} is not the official archive's (readable, but not verified)")
        if not s.ok:
            click.echo(f"unusable: {s.error}")
    if not any(s.ok for s in report.sources):
        click.echo(f"no usable CIFAR-10 copy in {report.root}. {how_to_get_data(report.root)}")
        sys.exit(1)


COMMANDS = [data]
