"""What every command shares about ending: the exit statuses, the one-line refusal on
stderr, and the decorator that turns the console's refusals into it.

Exit status: 0 the job succeeded (or the command did what was asked), 1 the job failed,
2 it was cancelled or interrupted, 3 a usage, authentication or connection error,
130 you stopped following with Ctrl-C (the job goes on).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from patchbay_cli.api import ApiError, Unreachable

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_CANCELLED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a command ended by SIGPIPE
EXIT_OF_STATUS = {"succeeded": EXIT_SUCCEEDED, "failed": EXIT_FAILED,
                  "cancelled": EXIT_CANCELLED, "interrupted": EXIT_CANCELLED}


class CliError(click.ClickException):
    """A refusal worth one line on stderr and exit status 3."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"patchbay: {self.message}", err=True)


def refusals(command: Callable[..., int | None]) -> Callable[..., int]:
    """The console's refusals and an unreachable console as one line and exit 3."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs) or EXIT_SUCCEEDED
        except ApiError as exc:
            if exc.status == 401:
                raise CliError(f"authentication failed: {exc.message} (check --token or "
                               "PATCHBAY_TOKEN, or run `patchbay login URL`)") from None
            raise CliError(str(exc)) from None
        except Unreachable as exc:
            raise CliError(str(exc)) from None

    return wrapper


def notice(text: str) -> None:
    """A line for the person at the shell, on stderr (stdout stays for the answer)."""
    click.echo(f"patchbay: {text}", err=True)
