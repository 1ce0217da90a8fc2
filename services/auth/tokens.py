"""Personal API tokens: made, shown once, stored hashed, checked, revoked.

A token is ``pbt_`` plus 43 random URL-safe characters (256 bits): far too much entropy
to guess, so one SHA-256 is the right hash (a slow password hash would only slow every
API call). Its first 12 characters (``prefix``) name it on pages and in the audit log.
It acts as its user, with the user's role or the lower role it was made with; a user
disabled or demoted takes their tokens down with them (the role is capped again on
every request).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from extensions import db
from models import ROLES, ApiToken, User, utcnow
from services.audit import record
from services.auth.id_sets import selected_ids
from tasks.errors import PatchbayError

TOKEN_PREFIX = "pbt_"  # noqa: S105 - marks a string as a Patchbay token
SHOWN_PREFIX = 12  # characters of a token kept in clear: "pbt_" and 8 more
MAX_EXPIRY_DAYS = 3650
LAST_USE_PRECISION = timedelta(minutes=1)  # last use is written at most once a minute
RECENT_TOKENS = timedelta(hours=24)  # revoked by default with the user's sessions
ROLE_RANK = {role: rank for rank, role in enumerate(("viewer", "operator", "admin"))}


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def effective_role(user_role: str, token_role: str | None) -> str:
    """The lower of the user's role and the token's cap."""
    if token_role is None:
        return user_role
    return min(user_role, token_role, key=lambda role: ROLE_RANK.get(role, -1))


def create_token(user: User, name: str, expires_in_days: int | None = None,
                 role: str | None = None, *, acting_role: str | None = None,
                 by: str | None = None, created_from: str | None = None
                 ) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns it and its clear text (shown this once).

    ``acting_role``: the role of whoever asks (a token may only make tokens up to its own
    cap); defaults to the user's role. ``created_from``: the address that asked (shown
    on the account page and in the audit log; None from the host's CLI)."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise PatchbayError("invalid", "name must be 1 to 64 characters", "name")
    if expires_in_days is not None and (
            isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int)
            or not 1 <= expires_in_days <= MAX_EXPIRY_DAYS):
        raise PatchbayError("invalid", f"expires_in_days must be a whole number from 1 to "
                            f"{MAX_EXPIRY_DAYS}, or null for no expiry", "expires_in_days")
    ceiling = effective_role(user.role, acting_role)
    if role is not None:
        if role not in ROLES:
            raise PatchbayError("invalid", f"role must be one of {', '.join(ROLES)}", "role")
        if ROLE_RANK[role] > ROLE_RANK[ceiling]:
            raise PatchbayError("invalid", f"role {role} is above yours ({ceiling}); a token "
                                "acts with your role or a lower one", "role")
        # Kept as asked, also when it is the user's role today: a later promotion must
        # not raise a token made as "operator" (only a token made without one follows).
    elif ceiling != user.role:
        role = ceiling
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(user_id=user.id, name=name, prefix=raw[:SHOWN_PREFIX],
                     token_hash=hash_token(raw), role=role, created_at=now,
                     created_from=created_from,
                     expires_at=now + timedelta(days=expires_in_days)
                     if expires_in_days else None)
    db.session.add(token)
    db.session.flush()
    record("token.create", f"{user.username} {token.prefix}", username=by, commit=False,
           name=name, token_id=token.id, role=role or user.role,
           expires_at=token.expires_at.isoformat() + "Z" if token.expires_at else None,
           created_from=created_from)
    db.session.commit()
    return token, raw


def revoke_token(token: ApiToken, *, by: str | None = None) -> bool:
    """Revoke ``token``; False when it already was."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    record("token.revoke", f"{token.user.username} {token.prefix}", username=by,
           commit=False, name=token.name, token_id=token.id)
    db.session.commit()
    return True


def revoke_user_tokens(user: User, *, every_token: bool,
                       by: str | None = None) -> list[int]:
    """Revoke ``user``'s live tokens when a password reset, role change or disabling
    ended their sessions: all of them with ``every_token``, else those made in the last
    :data:`RECENT_TOKENS` (a stolen cookie may have minted one just before). Returns the
    revoked ids; the caller commits (with the change that ended the sessions) and drops
    their sockets."""
    query = select(ApiToken).where(ApiToken.user_id == user.id,
                                   ApiToken.revoked_at.is_(None))
    if not every_token:
        query = query.where(ApiToken.created_at >= utcnow() - RECENT_TOKENS)
    now, revoked = utcnow(), []
    for token in db.session.scalars(query):
        token.revoked_at = now
        record("token.revoke", f"{user.username} {token.prefix}", username=by,
               commit=False, name=token.name, token_id=token.id,
               reason="every token" if every_token else "made in the last 24 h")
        revoked.append(token.id)
    return revoked


def user_tokens(user_id: int) -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)
                                   .order_by(ApiToken.id.desc())))


def authenticate(raw: str) -> tuple[ApiToken | None, str]:
    """The live token for ``raw`` (its user active), and why not when None."""
    if not raw.startswith(TOKEN_PREFIX):
        return None, "not a Patchbay token"
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(raw)))
    if token is None:
        return None, "unknown token"
    now = utcnow()
    why = refusal(token, now)
    if why is not None:
        return None, why
    if token.last_used_at is None or now - token.last_used_at >= LAST_USE_PRECISION:
        token.last_used_at = now
        db.session.commit()
    return token, ""


def refusal(token: ApiToken, now: datetime) -> str | None:
    """Why ``token`` may not be used now, or None."""
    if token.revoked_at is not None:
        return "this token was revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "this token has expired"
    if not token.user.active:
        return "this token's user is disabled"
    return None


def live_token(token_id: object) -> ApiToken | None:
    """The token with id ``token_id`` if it may still be used (a socket that logged in
    with it is re-checked on every event)."""
    if not isinstance(token_id, int) or isinstance(token_id, bool):
        return None
    token = db.session.get(ApiToken, token_id)
    return token if token is not None and refusal(token, utcnow()) is None else None


def live_token_ids(token_ids: Iterable[int]) -> set[int]:
    """Which of ``token_ids`` may still be used (for the socket sweeper: one query)."""
    now = utcnow()
    return selected_ids(
        select(ApiToken.id).join(User, User.id == ApiToken.user_id).where(
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
            User.active.is_(True)),
        ApiToken.id, token_ids)


def is_expired(token: ApiToken, now: datetime | None = None) -> bool:
    return token.expires_at is not None and token.expires_at <= (now or utcnow())
