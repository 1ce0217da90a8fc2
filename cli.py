"""``flask`` commands: users, inventory, runbook checks."""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from extensions import db
from models import ROLES, User
from tasks.inventory import InventoryError, apply_inventory, parse_inventory
from tasks.runbooks import RunbookError


@click.command("create-user")
@with_appcontext
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="operator", show_default=True)
@click.option("--password", envvar="PATCHBAY_NEW_PASSWORD",
              help="Or set PATCHBAY_NEW_PASSWORD; prompted for when neither is given.")
@click.option("--update", is_flag=True, help="Change the password/role of an existing user.")
def create_user(username: str, role: str, password: str | None, update: bool) -> None:
    """Create a user (or, with --update, reset its password and role)."""
    if not 1 <= len(username) <= 64 or not username.replace("-", "").replace("_", "") \
            .replace(".", "").isalnum():
        raise click.BadParameter("use 1-64 letters, digits, '.', '-' or '_'",
                                 param_hint="USERNAME")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    user = db.session.scalar(select(User).where(User.username == username))
    if user is not None and not update:
        raise click.ClickException(f"user {username!r} exists (use --update to change it)")
    if user is None:
        user = User(username=username)
        db.session.add(user)
    user.role = role
    user.active = True
    user.set_password(password)
    db.session.commit()
    click.echo(f"user {username} ({role}) {'updated' if update else 'created'}")


@click.command("import-inventory")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def import_inventory(path: Path) -> None:
    """Create or update servers from an inventory YAML file (all or nothing)."""
    try:
        inventory = parse_inventory(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    except InventoryError as exc:
        raise click.ClickException(f"{exc} (nothing imported)") from None
    created, updated = apply_inventory(db.session, inventory)
    db.session.commit()
    click.echo(f"imported {path}: {created} server(s) created, {updated} updated")


@click.command("check-runbooks")
@with_appcontext
def check_runbooks() -> None:
    """Validate every runbook in the runbook folder."""
    try:
        books = current_app.extensions["patchbay"].runbooks()
    except RunbookError as exc:
        raise click.ClickException(str(exc)) from None
    for name, book in books.items():
        click.echo(f"ok  {name}  ({book.source}, {len(book.spec.steps)} steps)")


@click.command("ensure-admin")
@with_appcontext
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


def register(app: Flask) -> None:
    for command in (create_user, import_inventory, check_runbooks, ensure_admin):
        app.cli.add_command(command)
