"""Engine.IO sessions that have not logged in yet: at most
``PATCHBAY_MAX_HANDSHAKES_PER_ADDRESS`` per client address, and closed as soon as their
Socket.IO connect is refused.

Anyone can open an Engine.IO session (a polling handshake is one anonymous GET), and
each one lived until its ping timed out (about 45 s) whether or not it ever logged in.
Here a client address may hold that many sessions whose Socket.IO connect has not been
accepted yet; a further handshake gets a 401 and one line in the log. A session whose
connect is refused (not logged in, no CSRF token, too many sockets) is closed right
after the refusal is sent, so the client learns why and nothing is left open.

The address is ``REMOTE_ADDR`` as the console's trusted-proxy middleware leaves it
(``blueprints/http/client_address.py``): the client's, behind a trusted proxy. The counts are
this process's sessions (Engine.IO sessions live in the process that made them).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import request
from socketio import Server

log = logging.getLogger(__name__)


class Handshakes:
    """This process's Engine.IO sessions not yet accepted, by client address."""

    def __init__(self, per_address: int) -> None:
        if per_address < 1:
            raise RuntimeError("PATCHBAY_MAX_HANDSHAKES_PER_ADDRESS must be 1 or more")
        self.per_address = per_address
        self._pending: dict[str, str] = {}  # eio sid -> address
        self._counts: Counter[str] = Counter()
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, eio_sid: str, address: str) -> bool:
        """Count a new session of ``address``; False (not counted) beyond the cap."""
        with self._lock:
            if self._counts[address] >= self.per_address:
                return False
            self._pending[eio_sid] = address
            self._counts[address] += 1
            return True

    def accepted(self, eio_sid: str) -> None:
        """Its Socket.IO connect was accepted: the per-user socket limit takes over."""
        with self._lock:
            self._forget(eio_sid)

    def refused(self, eio_sid: str) -> None:
        """Its Socket.IO connect was refused: close it once the refusal is sent."""
        with self._lock:
            self._refused.add(eio_sid)

    def take_refused(self, eio_sid: str) -> bool:
        with self._lock:
            if eio_sid not in self._refused:
                return False
            self._refused.discard(eio_sid)
            return True

    def gone(self, eio_sid: str) -> None:
        with self._lock:
            self._forget(eio_sid)
            self._refused.discard(eio_sid)

    def pending(self, address: str) -> int:
        with self._lock:
            return self._counts[address]

    def _forget(self, eio_sid: str) -> None:
        address = self._pending.pop(eio_sid, None)
        if address is not None:
            self._counts[address] -= 1
            if not self._counts[address]:
                del self._counts[address]


def install(server: Server, handshakes: Handshakes) -> None:
    """Put ``handshakes`` around python-socketio's own Engine.IO event handlers."""
    eio = server.eio
    on_connect: Callable[..., Any] = eio.handlers["connect"]
    on_message: Callable[..., Any] = eio.handlers["message"]
    on_disconnect: Callable[..., Any] = eio.handlers["disconnect"]

    def connect(eio_sid: str, environ: dict[str, Any]) -> Any:
        address = environ.get("REMOTE_ADDR") or "unknown"
        if not handshakes.admit(eio_sid, address):
            log.warning("refused a Socket.IO handshake from %s: %d connections not "
                        "logged in yet (PATCHBAY_MAX_HANDSHAKES_PER_ADDRESS)",
                        address, handshakes.per_address)
            return (f"too_many_handshakes: {handshakes.per_address} connections from "
                    "your address have not logged in yet "
                    "(PATCHBAY_MAX_HANDSHAKES_PER_ADDRESS)")
        return on_connect(eio_sid, environ)

    def message(eio_sid: str, data: Any) -> Any:
        try:
            return on_message(eio_sid, data)
        finally:
            # The CONNECT_ERROR packet is queued by now; the close goes out after it.
            if handshakes.take_refused(eio_sid):
                eio.disconnect(eio_sid)

    def disconnect(eio_sid: str, reason: Any = None) -> Any:
        handshakes.gone(eio_sid)
        return on_disconnect(eio_sid, reason)

    eio.on("connect", connect)
    eio.on("message", message)
    eio.on("disconnect", disconnect)


def current_eio_sid(server: Server) -> str | None:
    """The Engine.IO session of the socket whose event is being handled."""
    return server.manager.eio_sid_from_sid(request.sid, "/")
