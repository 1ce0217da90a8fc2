"""Who the session cookie says you are, checked against the server on every use.

Flask-Login calls :func:`load_user` on every request and every socket event (each
Socket.IO event gets a fresh request context). A cookie session counts only while its
:class:`~models.LoginSession` is live (see :mod:`services.auth.login_sessions`); a socket
that logged in with an API token counts only while the token does. Which token a socket
came with is known from the server's own record of that socket
(:mod:`services.auth.socket_tokens`), never from the cookie: a cookie signed with
SECRET_KEY is not a session without its live row.
"""

from __future__ import annotations

from flask import current_app, g, request, session
from flask_login import login_user, logout_user

from models import User
from services.auth import login_sessions, socket_tokens, tokens
from services.console import console_services

LOGIN_KEY = "login_key"  # the session cookie's key of its LoginSession


def load_user(user_id: str) -> User | None:
    socket_token = socket_tokens.current()
    if socket_token is not None:
        token = tokens.live_token(socket_token.id)
        return token.user if token is not None and str(token.user_id) == user_id else None
    row = login_sessions.current(session.get(LOGIN_KEY), _lifetimes())
    if row is None or str(row.user_id) != user_id:
        return None
    g.login_session_id = row.id
    return row.user


def log_in(user: User) -> None:
    """Start a server-side session for ``user`` and put its key in the cookie. Neither
    an earlier login's key nor the CSRF secret of before the login is kept: a token
    planted in the browser before login (CSRF fixation) is worthless after it."""
    session.pop(LOGIN_KEY, None)
    forget_csrf_secret()
    row, key = login_sessions.begin(user, request.remote_addr, _lifetimes())
    session[LOGIN_KEY] = key
    session.permanent = True  # the cookie lasts PERMANENT_SESSION_LIFETIME, not 31 days
    login_user(user)
    g.login_session_id = row.id


def log_out(reason: str = "logout") -> int | None:
    """End this browser's session (only this one); returns its id for dropping sockets."""
    session_id = getattr(g, "login_session_id", None)
    login_sessions.end(session.pop(LOGIN_KEY, None), reason)
    logout_user()
    forget_csrf_secret()
    return session_id


def forget_csrf_secret() -> None:
    """Drop the session's CSRF secret (and this request's token made from it): the next
    page gets a new one. The secret lives as long as its login, never across one."""
    session.pop(current_app.config["WTF_CSRF_FIELD_NAME"], None)
    g.pop("csrf_token", None)


def current_login_session_id() -> int | None:
    return getattr(g, "login_session_id", None)


def _lifetimes() -> login_sessions.Lifetimes:
    return console_services().session_lifetimes
