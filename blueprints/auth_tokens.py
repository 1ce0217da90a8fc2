"""``Authorization: Bearer <token>``: who a request is, when it is not a browser session.

A bearer request is its token's user for that request only (no session cookie is set)
and acts with the token's role cap. CSRF protects cookie sessions, whose credential a
forged cross-site form would carry along; a bearer header is never sent on its own, so
bearer requests skip it (Flask-WTF's automatic check is off; :func:`protect_from_csrf`
runs it for every other request, as before).
"""

from __future__ import annotations

import time

from flask import Flask, current_app, g, has_request_context, jsonify, request, session
from flask_login import current_user, login_user
from socketio.exceptions import ConnectionRefusedError as SocketRefused
from werkzeug.wrappers import Response

from blueprints.login_state import SOCKET_TOKEN_ID
from extensions import csrf
from services import tokens
from tasks.errors import PatchbayError

SOCKET_TOKEN_ROLE = "token_role"  # noqa: S105 - a session key: the token role cap
SOCKET_TOKEN_EXPIRES = "token_expires"  # noqa: S105 - ... and its expiry (epoch s)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def authenticate_bearer() -> tuple[Response, int] | None:
    """Make a bearer request its token's user (``g._login_user`` is where Flask-Login
    keeps the current user of a request); refuse a bad token with 401."""
    raw = bearer_token()
    if raw is None:
        return None
    token, why = tokens.authenticate(raw)
    if token is None:
        return jsonify({"ok": False, "error": {"code": "unauthorized", "message": why,
                                               "field": None}}), 401
    g._login_user = token.user
    g.api_token = token
    return None


def protect_from_csrf() -> None:
    if getattr(g, "api_token", None) is not None:
        return
    if request.endpoint and request.method in current_app.config["WTF_CSRF_METHODS"]:
        csrf.protect()


def current_role() -> str | None:
    """The current user's role, capped by the token they came with (HTTP or socket)."""
    if not current_user.is_authenticated:
        return None
    api_token = getattr(g, "api_token", None) if has_request_context() else None
    cap = api_token.role if api_token is not None else session.get(SOCKET_TOKEN_ROLE)
    return tokens.effective_role(current_user.role, cap)


def log_socket_in(auth: object) -> int:
    """A socket without a browser session may bring ``auth: {"token": ...}``; returns
    the token id (the socket joins ``token:<id>``, so revoking it drops the socket).
    Refused with python-socketio's exception, whose message reaches the client."""
    raw = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(raw, str):
        raise SocketRefused("unauthorized: log in first, or connect with "
                                     "auth {\"token\": ...}")
    token, why = tokens.authenticate(raw)
    if token is None:
        raise SocketRefused(f"unauthorized: {why}")
    login_user(token.user)
    session[SOCKET_TOKEN_ID] = token.id  # every later event re-checks the token
    session[SOCKET_TOKEN_ROLE] = token.role
    session[SOCKET_TOKEN_EXPIRES] = token.expires_at.timestamp() if token.expires_at \
        else None
    return token.id


def check_socket_token() -> None:
    """A socket that logged in with a token stops working when it expires."""
    expires = session.get(SOCKET_TOKEN_EXPIRES)
    if expires is not None and time.time() >= expires:
        raise PatchbayError("unauthorized", "this token has expired")


def register_before_guard(app: Flask) -> None:
    """Bearer authentication runs before the permission check (who you are first)."""
    # Whatever the settings say: Flask-WTF's own check would refuse bearer requests.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request(authenticate_bearer)


def register_after_guard(app: Flask) -> None:
    app.before_request(protect_from_csrf)
