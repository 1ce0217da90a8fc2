"""The audit log: who did what, when and from where.

``record`` adds an entry to the current database session; callers commit it together
with the change it describes (or on its own for reads such as a failed login).
"""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request
from flask_login import current_user

from extensions import db
from models import AuditEntry


def record(action: str, target: str | None = None, *, username: str | None = None,
           commit: bool = True, **detail: Any) -> None:
    """Log ``action`` on ``target`` by the current user (or ``username``, e.g. from CLI)."""
    user_id = None
    if username is None and has_request_context() and current_user.is_authenticated:
        user_id, username = current_user.id, current_user.username
    remote = request.remote_addr if has_request_context() else "cli"
    db.session.add(AuditEntry(user_id=user_id, username=username, action=action,
                              target=target, detail=detail, remote_addr=remote))
    if commit:
        db.session.commit()
