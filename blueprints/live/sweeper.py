"""Drop this process's sockets whose login session or token has ended.

Ending a session (logout, password reset, role change, disabled user) drops its
sockets at once through the message queue when there is one. Without one, a ``flask``
command or another process cannot reach this process's sockets, so every console
process also re-checks its own sockets every ``PATCHBAY_SESSION_CHECK_INTERVAL``
seconds (one query for all of them) and drops those whose credential is no longer
live: a stale socket lives at most that long, whatever ended it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask

from extensions import db
from services.auth import login_sessions, tokens
from services.console import console_services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credential:
    """What a socket logged in with: a browser session ("login") or an API token."""

    kind: str
    id: int


class SocketSweeper:
    """Knows this process's sockets and what each logged in with."""

    def __init__(self) -> None:
        self._sockets: dict[str, Credential] = {}
        self._lock = threading.Lock()

    def add(self, sid: str, credential: Credential) -> None:
        with self._lock:
            self._sockets[sid] = credential

    def discard(self, sid: str) -> None:
        with self._lock:
            self._sockets.pop(sid, None)

    def count(self) -> int:
        return len(self._sockets)

    def stale(self, lifetimes: login_sessions.Lifetimes) -> list[str]:
        """The sids whose session or token is no longer live (needs an app context)."""
        with self._lock:
            sockets = dict(self._sockets)
        logins = {c.id for c in sockets.values() if c.kind == "login"}
        token_ids = {c.id for c in sockets.values() if c.kind == "token"}
        try:
            live_logins = login_sessions.live_ids(logins, lifetimes)
            live_tokens = tokens.live_token_ids(token_ids)
        finally:
            db.session.remove()
        return [sid for sid, c in sockets.items()
                if (c.id not in live_logins if c.kind == "login" else c.id not in live_tokens)]

    def run(self, app: Flask, disconnect: Callable[[str], Any],
            sleep: Callable[[float], Any]) -> None:
        """Check every interval, forever (a background task of the console process)."""
        interval = float(app.config["SESSION_CHECK_INTERVAL"])
        lifetimes = console_services(app).session_lifetimes
        while True:
            sleep(interval)
            try:
                with app.app_context():
                    stale = self.stale(lifetimes) if self._sockets else []
            except Exception:  # noqa: BLE001 - a database blip must not end the sweeper
                log.exception("checking open sockets against their sessions failed")
                continue
            for sid in stale:
                self.discard(sid)
                log.info("dropping socket %s: its session or token ended", sid)
                disconnect(sid)
            if stale:
                log.info("dropped %d socket(s) whose session or token ended", len(stale))
