"""The ``eca-ref`` command line: thin click shells over plain functions.

Every command calls a function of the package that returns a result (usable
from Python and notebooks) and only formats it here. Errors the user caused
(:class:`eca_ref.errors.EcaRefError`, and click's usage errors such as a value
that is not a number) print as one line on stderr with exit status 2, never a
traceback.
"""
from __future__ import annotations

import sys

import click

from eca_ref.errors import EcaRefError


def _usage_error(exc: click.UsageError):
    """click's usage errors (a bad option value, an unknown option or command) as one line, status 2."""
    where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    click.echo(f"Error: {exc.format_message().rstrip('.')}{where}", err=True)
    sys.exit(2)


class _Main(click.Group):
    """A group that turns EcaRefError and click's usage errors into one line on stderr and exit status 2."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:  # the group's own options, e.g. --backend
            _usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EcaRefError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except click.UsageError as exc:  # a command's options and arguments
            _usage_error(exc)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eca-ref")
@click.option("--backend", type=click.Choice(["numpy", "cupy"]), default=None, envvar="ECA_REF_BACKEND",
              help="Array library for every computation (default numpy; also $ECA_REF_BACKEND).")
def main(backend):
    """eca-ref: the reference implementation of ECA-Net in plain NumPy."""
    if backend:
        from eca_ref.backend import set_backend
        set_backend(backend)


def _register():
    # Each area keeps its commands in its own module; they are attached here.
    from eca_ref import cli_bench, cli_core, cli_data, cli_grade, cli_params, cli_train
    for module in (cli_core, cli_params, cli_data, cli_train, cli_grade, cli_bench):
        for cmd in module.COMMANDS:
            main.add_command(cmd)


_register()
