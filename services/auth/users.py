"""Changing users, shared by the admin pages and the ``flask`` CLI (both audited)."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from extensions import db
from models import ROLES, User
from services.audit import record
from services.auth import login_sessions, tokens
from services.console import console_services
from tasks.errors import PatchbayError

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MIN_PASSWORD = 8


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PatchbayError("invalid", f"the password needs at least {MIN_PASSWORD} characters",
                            "password")
    if len(password) > 256:
        raise PatchbayError("invalid", "the password is too long", "password")


def create_user(username: str, password: str, role: str, *, by: str | None = None) -> User:
    if not USERNAME.fullmatch(username or ""):
        raise PatchbayError("invalid", "user names are 1-64 letters, digits, '.', '-' or '_'",
                            "username")
    if role not in ROLES:
        raise PatchbayError("invalid", f"role must be one of {', '.join(ROLES)}", "role")
    check_password_rules(password)
    if db.session.scalar(select(User).where(User.username == username)) is not None:
        raise PatchbayError("invalid", f"user {username!r} already exists", "username")
    user = User(username=username, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    record("user.create", username, username=by, commit=False, role=role)
    db.session.commit()
    return user


def set_role(user: User, role: str, *, by: str | None = None,
             revoke_tokens: bool = False) -> None:
    if role not in ROLES:
        raise PatchbayError("invalid", f"role must be one of {', '.join(ROLES)}", "role")
    if user.role == "admin" and role != "admin":
        _keep_an_admin(user)
    old, user.role = user.role, role
    record("user.role", user.username, username=by, commit=False, old=old, new=role)
    _end_sessions(user, "role changed", revoke_tokens, by)  # authorised under the old role


def reset_password(user: User, password: str, *, by: str | None = None,
                   revoke_tokens: bool = False) -> None:
    check_password_rules(password)
    user.set_password(password)
    record("user.password", user.username, username=by, commit=False)
    _end_sessions(user, "password reset", revoke_tokens, by)


def set_active(user: User, active: bool, *, by: str | None = None,
               revoke_tokens: bool = False) -> None:
    if not active and user.role == "admin":
        _keep_an_admin(user)
    user.active = active
    record("user.enable" if active else "user.disable", user.username, username=by,
           commit=False)
    if active:
        db.session.commit()
    else:
        _end_sessions(user, "user disabled", revoke_tokens, by)


def _end_sessions(user: User, reason: str, revoke_tokens: bool, by: str | None) -> None:
    """End every browser session of ``user`` (in the same commit as the change) and drop
    their sockets: at once through the message queue, else within
    ``PATCHBAY_SESSION_CHECK_INTERVAL`` by each console's socket sweeper.

    Their tokens go too: every one with ``revoke_tokens``, else those made in the last
    24 hours (a stolen cookie's session ends here, and a token it minted must not
    outlive it)."""
    login_sessions.end_all(user.id, reason)
    revoked = tokens.revoke_user_tokens(user, every_token=revoke_tokens, by=by)
    db.session.commit()
    sockets = console_services().sockets
    for token_id in revoked:
        sockets.end_token(token_id)
    sockets.end_user(user.id, reason)


def find_user(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise PatchbayError("not_found", f"no user {username!r}", "username")
    return user


def _keep_an_admin(user: User) -> None:
    admins = db.session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user.id))
    if not admins:
        raise PatchbayError("invalid", "this is the last active admin; keep at least one",
                            "role")
