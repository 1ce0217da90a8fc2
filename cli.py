"""``flask`` commands: users, inventory, runbook checks, event retention."""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from extensions import db
from models import ROLES, User
from services.audit import record
from services.auth import tokens, users
from services.console import console_services
from services.database_state import EXTENSION as NEW_PATHS
from services.database_state import schema_problem
from services.retention import prune_events
from tasks.errors import PatchbayError
from tasks.planning.inventory import InventoryError, apply_inventory, parse_inventory
from tasks.planning.runbook_files import RunbookError


def needs_database(command: Callable[..., None]) -> Callable[..., None]:
    """``with_appcontext``, and first the database's check: a database that is not
    migrated (or not to this code's newest migration) is said in one line, exit 1, and
    what the app made on the way (an instance folder, an empty SQLite file) is removed
    again: nothing is created."""
    @functools.wraps(command)
    def checked(*args: object, **kwargs: object) -> None:
        problem = schema_problem(db.engine, current_app.extensions["migrate"].directory)
        if problem is not None:
            db.engine.dispose()
            if NEW_PATHS in current_app.extensions:
                current_app.extensions[NEW_PATHS].remove()
            raise click.ClickException(problem)
        command(*args, **kwargs)
    return with_appcontext(checked)


def _cli_user() -> str:
    """How the audit log names whoever ran a CLI command."""
    return f"cli:{getpass.getuser()}"


@click.command("create-user")
@needs_database
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True,
              help="viewer watches; operator also runs jobs; admin also manages users.")
@click.option("--password", envvar="PATCHBAY_NEW_PASSWORD",
              help="Or set PATCHBAY_NEW_PASSWORD; prompted for when neither is given.")
def create_user(username: str, role: str, password: str | None) -> None:
    """Create a user."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _clean_errors():
        users.create_user(username, password, role, by=_cli_user())
    click.echo(f"user {username} ({role}) created")


@click.command("set-role")
@needs_database
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--revoke-tokens", is_flag=True,
              help="Also revoke all the user's API tokens (without it: only those "
              "created in the last 24 hours).")
def set_role(username: str, role: str, revoke_tokens: bool) -> None:
    """Change a user's role (their open sockets are disconnected)."""
    with _clean_errors():
        users.set_role(users.find_user(username), role, by=_cli_user(),
                       revoke_tokens=revoke_tokens)
    click.echo(f"user {username} is now {role}")


@click.command("reset-password")
@needs_database
@click.argument("username")
@click.option("--password", envvar="PATCHBAY_NEW_PASSWORD",
              help="Or set PATCHBAY_NEW_PASSWORD; prompted for when neither is given.")
@click.option("--revoke-tokens", is_flag=True,
              help="Also revoke all the user's API tokens (without it: only those "
              "created in the last 24 hours).")
def reset_password(username: str, password: str | None, revoke_tokens: bool) -> None:
    """Set a new password for a user."""
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    with _clean_errors():
        users.reset_password(users.find_user(username), password, by=_cli_user(),
                             revoke_tokens=revoke_tokens)
    click.echo(f"password of {username} changed")


@click.command("disable-user")
@needs_database
@click.argument("username")
@click.option("--revoke-tokens", is_flag=True,
              help="Also revoke all the user's API tokens (without it: only those "
              "created in the last 24 hours).")
def disable_user(username: str, revoke_tokens: bool) -> None:
    """Disable a user: no more logins, open sessions and sockets end."""
    with _clean_errors():
        users.set_active(users.find_user(username), False, by=_cli_user(),
                         revoke_tokens=revoke_tokens)
    click.echo(f"user {username} disabled")


@click.command("enable-user")
@needs_database
@click.argument("username")
def enable_user(username: str) -> None:
    """Enable a disabled user again."""
    with _clean_errors():
        users.set_active(users.find_user(username), True, by=_cli_user())
    click.echo(f"user {username} enabled")


@click.command("create-token")
@needs_database
@click.argument("username")
@click.option("--name", required=True, help="What the token is for, e.g. ci-deploy.")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None,
              help="Days until it stops working (default: never).")
@click.option("--role", type=click.Choice(ROLES), default=None,
              help="Act with this role, at most the user's (default: the user's role).")
def create_token(username: str, name: str, expires_in_days: int | None,
                 role: str | None) -> None:
    """Make an API token for a user; the token is printed alone on the last line."""
    with _clean_errors():
        user = users.find_user(username)
        if not user.active:
            raise PatchbayError("invalid", f"user {username} is disabled", "username")
        token, raw = tokens.create_token(user, name, expires_in_days, role, by=_cli_user())
    expiry = token.expires_at.strftime("%Y-%m-%d %H:%M UTC") if token.expires_at else "never"
    click.echo(f"token {token.name!r} ({token.prefix}…) for {username}, role "
               f"{token.role or user.role}, expires {expiry}; it is shown this once:",
               err=True)
    click.echo(raw)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn a refused change into a one-line CLI error; nothing is changed."""
    try:
        yield
    except PatchbayError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None


@click.command("import-inventory")
@needs_database
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def import_inventory(path: Path) -> None:
    """Create or update servers from an inventory YAML file (all or nothing)."""
    try:
        inventory = parse_inventory(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    except InventoryError as exc:
        raise click.ClickException(f"{exc} (nothing imported)") from None
    created, updated = apply_inventory(db.session, inventory,
                                       seal=console_services().engine.secrets.seal)
    record("inventory.import", str(path), username=_cli_user(), commit=False,
           created=created, updated=updated)
    db.session.commit()
    click.echo(f"imported {path}: {created} server(s) created, {updated} updated")


@click.command("check-runbooks")
@with_appcontext
def check_runbooks() -> None:
    """Validate every runbook in the runbook folder."""
    try:
        books = console_services().engine.runbooks()
    except RunbookError as exc:
        raise click.ClickException(str(exc)) from None
    for name, book in books.items():
        click.echo(f"ok  {name}  ({book.source}, {len(book.spec.steps)} steps)")


@click.command("ensure-admin")
@needs_database
@click.option("--username", default="admin", show_default=True)
def ensure_admin(username: str) -> None:
    """Create the demo admin if missing; password from PATCHBAY_ADMIN_PASSWORD."""
    password = os.environ.get("PATCHBAY_ADMIN_PASSWORD", "")
    if len(password) < 8:
        raise click.ClickException("set PATCHBAY_ADMIN_PASSWORD (at least 8 characters)")
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, role="admin")
        db.session.add(user)
    user.set_password(password)
    user.active = True
    db.session.commit()
    click.echo(f"admin user {username!r} is ready")


@click.command("prune-events")
@needs_database
@click.option("--older-than", "days", type=click.IntRange(min=0), default=None,
              metavar="DAYS", help="Remove the events of jobs that finished more than DAYS "
              "days ago (default: PATCHBAY_EVENT_RETENTION_DAYS).")
def prune_events_command(days: int | None) -> None:
    """Remove the event logs (output included) of finished jobs older than DAYS days.

    Running jobs are never touched. A pruned job keeps its summary and servers; its log
    becomes an events_pruned event and its job_finished event."""
    if days is None:
        days = int(current_app.config["EVENT_RETENTION_DAYS"])
        if days <= 0:
            raise click.ClickException("give --older-than DAYS (PATCHBAY_EVENT_RETENTION_DAYS "
                                       "is 0: events are kept forever)")
    pruned = prune_events(console_services().engine.db_sessions, days)
    for job in pruned:
        click.echo(f"job #{job.job_id}: {job.events} event(s) removed")
    removed = sum(job.events for job in pruned)
    record("events.prune", f"{len(pruned)} job(s)", username=_cli_user(), days=days,
           events=removed)
    click.echo(f"pruned {len(pruned)} finished job(s) older than {days} day(s): "
               f"{removed} event(s) removed")


def register(app: Flask) -> None:
    for command in (create_user, set_role, reset_password, disable_user, enable_user,
                    import_inventory, check_runbooks, ensure_admin, create_token,
                    prune_events_command):
        app.cli.add_command(command)
