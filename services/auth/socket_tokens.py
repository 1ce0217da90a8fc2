"""The API token each token-authenticated socket of this process logged in with.

Kept on the server, keyed by the socket's sid, and never in the Flask session: the
session is a cookie that anyone holding SECRET_KEY can write, and Flask-SocketIO copies
it into every socket. A socket lives on one node, so this process's map is the whole
truth about its own sockets. An HTTP request never looks here (it has no sid).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import Flask, current_app, has_request_context, request

from models import ApiToken
from services.console import console_services


@dataclass(frozen=True)
class SocketToken:
    """What a socket's token allows: its id (re-checked on every event), its role cap
    and its expiry (epoch seconds, None for never)."""

    id: int
    role: str | None
    expires_at: float | None

    @classmethod
    def of(cls, token: ApiToken) -> SocketToken:
        return cls(token.id, token.role,
                   token.expires_at.timestamp() if token.expires_at else None)


class SocketTokens:
    """sid -> :class:`SocketToken` for this process's token sockets."""

    def __init__(self) -> None:
        self._by_sid: dict[str, SocketToken] = {}
        self._lock = threading.Lock()

    def add(self, sid: str, token: SocketToken) -> None:
        with self._lock:
            self._by_sid[sid] = token

    def get(self, sid: str) -> SocketToken | None:
        return self._by_sid.get(sid)

    def discard(self, sid: str) -> None:
        with self._lock:
            self._by_sid.pop(sid, None)

    def all(self) -> list[SocketToken]:
        with self._lock:
            return list(self._by_sid.values())


def socket_tokens(app: Flask) -> SocketTokens:
    return console_services(app).socket_tokens


def current() -> SocketToken | None:
    """The token of the socket whose event is being handled; None on an HTTP request
    and on a socket of a browser session."""
    sid = getattr(request, "sid", None) if has_request_context() else None
    return socket_tokens(current_app).get(sid) if isinstance(sid, str) else None
