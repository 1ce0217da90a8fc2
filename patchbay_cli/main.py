"""The ``patchbay`` command: start, follow and inspect jobs from a shell or CI.

This module is the entry point (``patchbay_cli.main:main``): the group with its global
options, the commands it holds (each in the module of its kind: ``login``, ``start``,
``logs``, ``listings``, ``actions``), and how an ending becomes an exit status
(``exits``): 0 succeeded, 1 failed, 2 cancelled or interrupted, 3 a usage,
authentication or connection error, 130 stopped following with Ctrl-C (the job goes on).
"""

from __future__ import annotations

import os
import sys

import click

from patchbay_cli.actions import abort, cancel, promote
from patchbay_cli.exits import EXIT_BROKEN_PIPE, EXIT_STOPPED, EXIT_SUCCEEDED, EXIT_USAGE
from patchbay_cli.listings import jobs, runbooks, servers, show
from patchbay_cli.login import login, logout
from patchbay_cli.logs import logs
from patchbay_cli.settings import Settings
from patchbay_cli.start import exec_command, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="PATCHBAY_URL", metavar="URL",
              help="The console, e.g. https://patchbay.example (env PATCHBAY_URL; "
                   "default: the one `patchbay login` stored last).")
@click.option("--token", envvar="PATCHBAY_TOKEN", metavar="TOKEN",
              help="An API token (env PATCHBAY_TOKEN; default: the one `patchbay login` "
                   "stored for this URL).")
@click.option("--plain", is_flag=True,
              help="Plain lines even on a terminal (they are the default elsewhere).")
@click.option("--reconnect-timeout", type=click.FloatRange(min=0), default=300,
              show_default=True, metavar="SECONDS",
              help="While following: give up (exit 3) when the console stays unreachable "
                   "this long.")
@click.version_option(package_name="patchbay", prog_name="patchbay")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, plain: bool,
        reconnect_timeout: float) -> None:
    """Roll builds onto game servers with Patchbay, from a shell or a CI pipeline.

    Exit status: 0 succeeded, 1 failed, 2 cancelled or interrupted, 3 usage,
    authentication or connection error, 130 stopped following (Ctrl-C).
    """
    ctx.obj = Settings(url, token, plain, reconnect_timeout)


for command in (login, logout, run, exec_command, logs, jobs, show, cancel, promote, abort,
                servers, runbooks):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """The console script: runs a command and returns its exit status."""
    for stream in (sys.stdout, sys.stderr):  # a remote line is never worth a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    try:
        result = cli.main(args=argv, prog_name="patchbay", standalone_mode=False)
    except click.ClickException as exc:  # usage errors and CliError alike
        exc.show()
        return EXIT_USAGE
    except click.exceptions.Abort:
        click.echo("patchbay: stopped", err=True)
        return EXIT_STOPPED
    except BrokenPipeError:  # `patchbay logs 12 | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return result if isinstance(result, int) else EXIT_SUCCEEDED
