"""Admin pages: users (create, role, password, enable/disable) and the audit log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from blueprints.http.forms import CreateUserForm, UpdateUserForm, error_field_id, first_error
from extensions import db
from models import AuditEntry, User
from services.auth import users
from services.console import console_services
from tasks.errors import PatchbayError

bp = Blueprint("admin", __name__, url_prefix="/admin")
AUDIT_PAGE = 100
JOB_TARGET = re.compile(r"job #(\d+)")


@bp.get("/users")
def users_page() -> str:
    return _render_users(CreateUserForm())


@bp.post("/users")
def create_user() -> str | Response:
    form = CreateUserForm()
    if not form.validate_on_submit():
        return _render_users(form, first_error(form)), 400
    try:
        users.create_user(form.username.data, form.password.data, form.role.data)
    except PatchbayError as exc:
        db.session.rollback()
        return _render_users(form, exc.message, exc.field), 400
    flash(f"User {form.username.data} created.", "info")
    return redirect(url_for("admin.users_page"))


@bp.post("/users/<int:user_id>")
def update_user(user_id: int) -> str | Response:
    user = db.session.get(User, user_id)
    form = UpdateUserForm()
    if user is None:
        return _render_users(CreateUserForm(), f"no user #{user_id}"), 404
    if not form.validate_on_submit():
        return _render_users(CreateUserForm(), first_error(form)), 400
    try:
        if form.action.data in ("role", "disable") and user.id == current_user.id:
            raise PatchbayError("invalid", "you cannot demote or disable yourself")
        if form.action.data == "role":
            users.set_role(user, form.role.data, revoke_tokens=form.revoke_tokens.data)
        elif form.action.data == "password":
            users.reset_password(user, form.password.data or "",
                                 revoke_tokens=form.revoke_tokens.data)
        else:
            users.set_active(user, form.action.data == "enable",
                             revoke_tokens=form.revoke_tokens.data)
    except PatchbayError as exc:
        db.session.rollback()
        return _render_users(CreateUserForm(), exc.message), 400
    flash(f"User {user.username}: {form.action.data} done.", "info")
    return redirect(url_for("admin.users_page"))


@bp.get("/audit")
def audit() -> str:
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    filters = {key: request.args.get(key, "").strip()
               for key in ("action", "user", "since", "until")}
    if filters["action"]:
        query = query.where(AuditEntry.action.startswith(filters["action"]))
    if filters["user"]:
        query = query.where(AuditEntry.username == filters["user"])
    error = None
    for key, op in (("since", "__ge__"), ("until", "__le__")):
        if filters[key]:
            try:
                moment = datetime.fromisoformat(filters[key])
            except ValueError:
                error = f"{key} must be a date like 2026-11-25 or 2026-11-25T12:00"
                continue
            query = query.where(getattr(AuditEntry.ts, op)(moment))
    page = request.args.get("page", "1")
    page_number = int(page) if page.isdigit() and int(page) > 0 else 1
    entries = db.session.scalars(query.offset((page_number - 1) * AUDIT_PAGE)
                                 .limit(AUDIT_PAGE + 1)).all()
    rows = [(entry, detail_pairs(entry.detail), job_target(entry.target))
            for entry in entries[:AUDIT_PAGE]]
    return render_template("admin/audit.html", rows=rows, filters=filters,
                           page=page_number, error=error, has_next=len(entries) > AUDIT_PAGE)


def detail_pairs(detail: dict[str, Any] | None) -> list[tuple[str, str]]:
    """An audit entry's detail as (key, text) pairs for people: lists joined by commas,
    mappings as ``key=value``, booleans as yes/no, nothing as a dash."""
    return [(str(key), _detail_text(value)) for key, value in (detail or {}).items()]


def _detail_text(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{key}={_detail_text(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_detail_text(item) for item in value)
    return str(value)


def job_target(target: str | None) -> int | None:
    """The job id of a ``job #N`` target (its page is linked), else None."""
    match = JOB_TARGET.fullmatch(target or "")
    return int(match.group(1)) if match else None


@bp.get("/nodes")
def nodes() -> str:
    """Every console node sharing the database: alive or dead, and the jobs it runs."""
    membership = console_services().membership
    return render_template("admin/nodes.html", nodes=membership.states(),
                           this_node=membership.me.id, timeout=membership.timeout)


def _render_users(create_form: CreateUserForm, error: str | None = None,
                  error_field: str | None = None) -> str:
    """The users page; ``error`` said beside the new-user form's field at fault (its
    own errors, or ``error_field``) by static/js/core/errors.js."""
    rows = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("admin/users.html", users=rows, create_form=create_form,
                           update_form=UpdateUserForm(), error=error,
                           error_field=error_field_id(create_form, error_field))
