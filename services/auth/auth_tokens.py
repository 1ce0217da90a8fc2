"""``Authorization: Bearer <token>``: who a request is, when it is not a browser session.

A bearer request is its token's user for that request only (no session cookie is set)
and acts with the token's role cap. CSRF protects cookie sessions, whose credential a
forged cross-site form would carry along; a bearer header is never sent on its own, so
bearer requests skip it (Flask-WTF's automatic check is off; :func:`protect_from_csrf`
runs it for every other request, as before).
"""

from __future__ import annotations

import time

from flask import Flask, current_app, g, has_request_context, jsonify, request
from flask_login import current_user, login_user
from socketio.exceptions import ConnectionRefusedError as SocketRefused
from werkzeug.wrappers import Response

from extensions import csrf
from services.auth import socket_tokens, tokens
from services.auth.socket_tokens import SocketToken
from tasks.errors import PatchbayError


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
    """The current user's role, capped by the token they came with: the bearer token
    of an HTTP request, or the token a socket logged in with (kept on the server)."""
    if not current_user.is_authenticated:
        return None
    api_token = getattr(g, "api_token", None) if has_request_context() else None
    if api_token is not None:
        cap = api_token.role
    else:
        socket_token = socket_tokens.current()
        cap = socket_token.role if socket_token is not None else None
    return tokens.effective_role(current_user.role, cap)


def log_socket_in(auth: object) -> SocketToken:
    """A socket without a browser session may bring ``auth: {"token": ...}``; returns
    what the socket may do with it, for the caller to keep against the socket's sid once
    the connection is accepted (the socket joins ``token:<id>``, so revoking it drops
    the socket). Refused with python-socketio's exception, whose message reaches the
    client."""
    raw = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(raw, str):
        raise SocketRefused("unauthorized: log in first, or connect with "
                                     "auth {\"token\": ...}")
    token, why = tokens.authenticate(raw)
    if token is None:
        raise SocketRefused(f"unauthorized: {why}")
    login_user(token.user)
    return SocketToken.of(token)


def check_socket_token() -> None:
    """A socket that logged in with a token stops working when it expires."""
    socket_token = socket_tokens.current()
    if socket_token is not None and socket_token.expires_at is not None \
            and time.time() >= socket_token.expires_at:
        raise PatchbayError("unauthorized", "this token has expired")


def register_before_guard(app: Flask) -> None:
    """Bearer authentication runs before the permission check (who you are first)."""
    # Whatever the settings say: Flask-WTF's own check would refuse bearer requests.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request(authenticate_bearer)


def register_after_guard(app: Flask) -> None:
    app.before_request(protect_from_csrf)
