"""Who the client is: the address the login limits, the audit log and ``/metrics``'s
allow list go by.

Behind ``PATCHBAY_TRUSTED_PROXIES`` proxies (nginx: 1) the client's address, scheme and
host come from their ``X-Forwarded-*`` headers, but only on connections whose peer is
one of those proxies (``PATCHBAY_TRUSTED_PROXY_ADDRESSES``, loopback by default). A
client that reaches a node directly could otherwise send ``X-Forwarded-For`` itself and
pass the metrics allow list, escape the login limits and forge the audit log's
addresses: its forwarded headers are dropped and its own address counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from services.networks import Network, address_in, parse_networks

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The request headers a proxy sets about the client (what ProxyFix reads), as WSGI keys.
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                     "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
                     "HTTP_X_FORWARDED_PREFIX")


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests from a trusted proxy; for any other peer
    the forwarded headers are removed, so nothing further in (Flask-Login, Engine.IO's
    origin check) reads them either."""

    def __init__(self, wsgi_app: WSGIApp, hops: int, proxies: list[Network]) -> None:
        self.wsgi_app = wsgi_app
        self.proxies = proxies
        self.proxy_fix = ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops,
                                  x_port=hops)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if address_in(environ.get("REMOTE_ADDR"), self.proxies):
            return self.proxy_fix(environ, start_response)
        for header in FORWARDED_HEADERS:
            environ.pop(header, None)
        return self.wsgi_app(environ, start_response)


def register(app: Flask) -> None:
    """Wrap the app (the Socket.IO middleware too, so sockets see the same address) when
    ``PATCHBAY_TRUSTED_PROXIES`` is set; with 0 no forwarded header is read at all."""
    hops = int(app.config["TRUSTED_PROXIES"])
    if hops < 0:
        raise RuntimeError("PATCHBAY_TRUSTED_PROXIES must be 0 or more")
    if not hops:
        return
    proxies = parse_networks(app.config["TRUSTED_PROXY_ADDRESSES"],
                             "PATCHBAY_TRUSTED_PROXY_ADDRESSES")
    if not proxies:
        raise RuntimeError("PATCHBAY_TRUSTED_PROXIES is set but "
                           "PATCHBAY_TRUSTED_PROXY_ADDRESSES names no proxy address")
    app.wsgi_app = TrustedProxies(app.wsgi_app, hops, proxies)
