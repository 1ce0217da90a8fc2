"""How ``python app.py`` serves the console: Socket.IO's server for the async mode, with
two guards against slow clients under eventlet (the default).

eventlet's WSGI server takes at most 1,024 connections at once and waits for a
request's headers as long as the client likes: 1,040 connections that each sent part
of their headers kept ``GET /login`` waiting for as long as they stayed open. So:

- ``PATCHBAY_HEADER_TIMEOUT``: a connection whose request line and headers have not
  all arrived that many seconds after it was accepted (or after its previous response)
  is closed. Once the headers are in, no limit applies here: a long-polling GET or a
  websocket may stay open as long as Socket.IO keeps it.
- ``PATCHBAY_MAX_CONNECTIONS_PER_ADDRESS``: open connections per client address (the
  TCP peer); one beyond it is closed as soon as it is accepted. The trusted proxies
  (``PATCHBAY_TRUSTED_PROXY_ADDRESSES``, when ``PATCHBAY_TRUSTED_PROXIES`` is set) are
  not limited: every client behind them shares their address, and nginx limits each
  client itself (``limit_conn`` in ``deploy/nginx/patchbay.conf``).

This is entry-point code (the only place besides ``wsgi.py`` and ``async_mode.py`` that
may use eventlet directly); gevent and threading are served by Flask-SocketIO as before.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter
from typing import Any

from flask import Flask

from extensions import socketio
from services.networks import Network, address_in, parse_networks

log = logging.getLogger(__name__)


def serve_console(app: Flask) -> None:
    """Serve ``app`` on ``PATCHBAY_HOST``:``PATCHBAY_PORT`` until stopped."""
    config = app.config
    host, port = config["HOST"], int(config["PORT"])
    if config["ASYNC_MODE"] != "eventlet":
        socketio.run(app, host=host, port=port,
                     allow_unsafe_werkzeug=config["ASYNC_MODE"] == "threading")
        return
    header_timeout = float(config["HEADER_TIMEOUT"])
    per_address = int(config["MAX_CONNECTIONS_PER_ADDRESS"])
    if header_timeout <= 0:
        raise RuntimeError("PATCHBAY_HEADER_TIMEOUT must be a number of seconds above 0")
    if per_address < 0:
        raise RuntimeError("PATCHBAY_MAX_CONNECTIONS_PER_ADDRESS must be 0 (no limit) "
                           "or more")
    exempt = parse_networks(config["TRUSTED_PROXY_ADDRESSES"],
                            "PATCHBAY_TRUSTED_PROXY_ADDRESSES") \
        if int(config["TRUSTED_PROXIES"]) else []
    _serve_eventlet(app, host, port, header_timeout, per_address, exempt)


def _serve_eventlet(app: Flask, host: str, port: int, header_timeout: float,
                    per_address: int, exempt: list[Network]) -> None:
    import eventlet
    import eventlet.wsgi

    class HeaderDeadline(eventlet.wsgi.HttpProtocol):
        """Each request's line and headers must arrive within ``header_timeout``."""

        def handle_one_request(self) -> None:
            # a socket timeout: eventlet's server closes the connection quietly on it
            self._deadline = eventlet.Timeout(
                header_timeout, TimeoutError("request headers not received in time"))
            try:
                super().handle_one_request()
            finally:
                self._deadline.cancel()

        def handle_one_response(self) -> None:
            self._deadline.cancel()  # the headers are in: the app decides from here
            super().handle_one_response()

    family, _, _, _, address = socket.getaddrinfo(host, port)[0]
    listener = eventlet.listen(address, family)
    if per_address:
        listener = CappedListener(listener, per_address, exempt)
    eventlet.wsgi.server(listener, app, log_output=app.debug, protocol=HeaderDeadline)


class CappedListener:
    """A listening socket whose ``accept`` closes a connection at once when its peer
    already holds ``per_address`` open ones (peers in ``exempt`` are not counted)."""

    def __init__(self, listener: Any, per_address: int, exempt: list[Network]) -> None:
        self._listener = listener
        self.per_address = per_address
        self._exempt = exempt
        self._open: Counter[str] = Counter()
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def accept(self) -> tuple[Any, Any]:
        while True:
            connection, peer = self._listener.accept()
            address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            if address_in(address, self._exempt):
                return connection, peer
            with self._lock:
                admitted = self._open[address] < self.per_address
                if admitted:
                    self._open[address] += 1
                first_refusal = not admitted and address not in self._warned
                if first_refusal:
                    self._warned.add(address)
            if admitted:
                return _Counted(connection, lambda a=address: self._closed(a)), peer
            if first_refusal:  # one line per burst, not one per connection
                log.warning("closing new connections from %s: it has %d open "
                            "(PATCHBAY_MAX_CONNECTIONS_PER_ADDRESS)", address,
                            self.per_address)
            connection.close()

    def _closed(self, address: str) -> None:
        with self._lock:
            self._open[address] -= 1
            if self._open[address] < self.per_address:
                self._warned.discard(address)  # a later burst gets its line again
            if self._open[address] <= 0:
                del self._open[address]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listener, name)


class _Counted:
    """An accepted connection that gives its place back when it is closed."""

    def __init__(self, connection: Any, on_close: Any) -> None:
        self._connection = connection
        self._on_close = on_close

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        self._connection.close()
        if on_close is not None:
            on_close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)
