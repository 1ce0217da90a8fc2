"""Browser login sessions, kept on the server so they can be ended.

Flask's session cookie is signed, not stored: on its own, a copied cookie would stay
valid until it expires, whatever its user does. So a login also makes a
:class:`~models.LoginSession` row and puts a random key in the cookie (only the key's
hash is stored). Every request and every socket event checks the row: it must not be
ended, its user must be active, and neither the idle lifetime
(``PATCHBAY_SESSION_IDLE_TIMEOUT``, since the last request or socket event) nor the
absolute one (``PATCHBAY_SESSION_MAX_AGE``, since login) may have run out.

Logout ends the one session; a password reset, a role change and disabling the user end
all of the user's sessions (their sockets are dropped by :mod:`blueprints.live.sweeper`
and, with a message queue, at once on every node).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from extensions import db
from models import LoginSession, User, utcnow
from services.auth.id_sets import selected_ids

TOUCH_PRECISION = timedelta(minutes=1)  # last_seen_at is written at most once a minute


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lives: since its last use, and at most since login."""

    idle: timedelta
    absolute: timedelta

    @classmethod
    def from_config(cls, config: dict) -> Lifetimes:
        return cls(timedelta(seconds=float(config["SESSION_IDLE_TIMEOUT"])),
                   timedelta(seconds=float(config["SESSION_MAX_AGE"])))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def begin(user: User, remote_addr: str | None, lifetimes: Lifetimes
          ) -> tuple[LoginSession, str]:
    """Start a session for ``user``; returns it and the key for the cookie."""
    forget_old(user.id, lifetimes)
    key = secrets.token_urlsafe(32)
    row = LoginSession(user_id=user.id, key_hash=hash_key(key),
                       remote_addr=(remote_addr or "")[:64] or None)
    db.session.add(row)
    db.session.commit()
    return row, key


def current(key: str | None, lifetimes: Lifetimes) -> LoginSession | None:
    """The live session for ``key`` (its user active), touching its last use; None when
    it is unknown, ended or expired (an expired one is ended on the way)."""
    if not isinstance(key, str) or not key:
        return None
    row = db.session.scalar(select(LoginSession).where(LoginSession.key_hash == hash_key(key)))
    if row is None or row.ended_at is not None or not row.user.active:
        return None
    now = utcnow()
    reason = expiry_reason(row, now, lifetimes)
    if reason is not None:
        _end(row, reason, now)
        db.session.commit()
        return None
    if now - row.last_seen_at >= TOUCH_PRECISION:
        row.last_seen_at = now
        db.session.commit()
    return row


def expiry_reason(row: LoginSession, now: datetime, lifetimes: Lifetimes) -> str | None:
    if now - row.created_at >= lifetimes.absolute:
        return "expired"
    if now - row.last_seen_at >= lifetimes.idle:
        return "idle"
    return None


def end(key: str | None, reason: str) -> None:
    """End the session holding ``key`` (logout). The caller's commit is not needed."""
    if not isinstance(key, str) or not key:
        return
    row = db.session.scalar(select(LoginSession).where(LoginSession.key_hash == hash_key(key)))
    if row is not None and row.ended_at is None:
        _end(row, reason, utcnow())
        db.session.commit()


def end_all(user_id: int, reason: str) -> int:
    """End every open session of a user (in the caller's transaction); how many."""
    result = db.session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason))
    return int(result.rowcount or 0)


def live_ids(session_ids: Iterable[int], lifetimes: Lifetimes) -> set[int]:
    """Which of ``session_ids`` are still live (for the socket sweeper: one query)."""
    now = utcnow()
    return selected_ids(
        select(LoginSession.id).join(User, User.id == LoginSession.user_id).where(
            LoginSession.ended_at.is_(None), User.active.is_(True),
            LoginSession.created_at > now - lifetimes.absolute,
            LoginSession.last_seen_at > now - lifetimes.idle),
        LoginSession.id, session_ids)


def forget_old(user_id: int, lifetimes: Lifetimes) -> None:
    """Delete a user's sessions that ended, or could not be used any more, longer than
    the absolute lifetime ago (at each login: the table stays small)."""
    cutoff = utcnow() - lifetimes.absolute
    db.session.execute(delete(LoginSession).where(
        LoginSession.user_id == user_id,
        or_(LoginSession.ended_at < cutoff, LoginSession.last_seen_at < cutoff)))


def _end(row: LoginSession, reason: str, now: datetime) -> None:
    row.ended_at = now
    row.end_reason = reason[:32]
