"""``patchbay login`` and ``patchbay logout``: the token stored for a console (made
from a user name and password, or given), and forgetting (and revoking) it."""

from __future__ import annotations

import getpass
import socket
import sys
from typing import Any

import click

from patchbay_cli import config
from patchbay_cli.api import Api, ApiError, Unreachable, log_in_with_password
from patchbay_cli.exits import EXIT_SUCCEEDED, CliError, notice, refusals
from patchbay_cli.settings import Settings


@click.command()
@click.argument("url", required=False)
@click.option("--token", "given_token", metavar="TOKEN",
              help="Store this token (made on the Account page or by `flask create-token`).")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")
@click.option("--username", "-u", help="Log in as this user and make a token.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (no prompt).")
@click.option("--name", "token_name", metavar="NAME",
              help="The new token's name (default: patchbay-cli@HOSTNAME).")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None,
              help="The new token stops working after this many days (default: never).")
@click.pass_obj
@refusals
def login(settings: Settings, url: str | None, given_token: str | None, token_stdin: bool,
          username: str | None, password_stdin: bool, token_name: str | None,
          expires_in_days: int | None) -> int:
    """Store a token for the console at URL (mode 0600, in the config directory).

    Give a token (--token, --token-stdin), or log in with a user name and password:
    a new token is made for you. The password is never stored.
    """
    url = config.normalize_url(url) if url else settings.url
    about: dict[str, Any] = {}
    if token_stdin:
        given_token = sys.stdin.readline().strip()
    if given_token:
        token = given_token
    else:
        token, about = _make_token(url, username, password_stdin, token_name,
                                   expires_in_days)
    Api(url, token).get("/api/jobs", limit=1)  # the token works here
    path = config.save_login(url, token, **about)
    what = f"token {about['name']} ({about['prefix']}…, role {about['role']}, expires " \
        f"{about['expires_at'] or 'never'})" if about else "the token"
    notice(f"logged in to {url}: {what} stored in {path}")
    return EXIT_SUCCEEDED


def _make_token(url: str, username: str | None, password_stdin: bool,
                token_name: str | None, expires_in_days: int | None
                ) -> tuple[str, dict[str, Any]]:
    """Log in with a user name and password and make a token: the token, and what
    ``config.save_login`` keeps about it."""
    username = username or click.prompt("User name")
    password = sys.stdin.readline().rstrip("\n") if password_stdin \
        else getpass.getpass("Password: ")
    session = log_in_with_password(url, username, password)
    name = token_name or f"patchbay-cli@{socket.gethostname()}"[:64]
    made = Api(url, None, session).post("/api/tokens", {
        "name": name, "expires_in_days": expires_in_days, "password": password})
    about = {"token_id": made["id"], "name": made["name"], "prefix": made["prefix"],
             "role": made["role"], "expires_at": made["expires_at"], "user": username}
    return made["token"], about


@click.command()
@click.argument("url", required=False)
@click.pass_obj
@refusals
def logout(settings: Settings, url: str | None) -> int:
    """Forget the token stored for URL (and revoke it, if `login` made it)."""
    url = config.normalize_url(url) if url else settings.url
    entry = config.forget_login(url)
    if entry is None:
        raise CliError(f"no token is stored for {url}")
    if entry.get("token_id"):
        try:
            Api(url, entry["token"]).request("DELETE", f"/api/tokens/{entry['token_id']}")
        except (ApiError, Unreachable) as exc:
            notice(f"forgotten, but not revoked on the console: {exc}")
            return EXIT_SUCCEEDED
    notice(f"forgot the token for {url}" + (" and revoked it" if entry.get("token_id")
                                            else ""))
    return EXIT_SUCCEEDED
