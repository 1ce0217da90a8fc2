"""Sending one attempt: a single HTTP POST, and what it got (:class:`Outcome`).

Only to an address :mod:`services.webhooks.address` allows, resolved once and connected
to as checked. Whatever goes wrong becomes an outcome with a reason; a receiver's answer
is kept as its status line only, never its body (it could hold anything)."""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from services.webhooks.address import (
    AddressPolicy,
    AddressRefused,
    PinnedHTTPConnection,
    PinnedHTTPSConnection,
)
from services.webhooks.urls import DEFAULT_PORTS, check_url
from tasks.errors import PatchbayError


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status, or an error before there was one.
    ``final``: trying again cannot help (the address is refused, the URL invalid)."""

    status_code: int | None = None
    error: str | None = None
    final: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None \
            and 200 <= self.status_code < 300


Sender = Callable[[str, bytes, dict[str, str], float, AddressPolicy], Outcome]


def _printable(text: str, limit: int) -> str:
    cleaned = "".join(char if char.isprintable() else " " for char in text)
    return " ".join(cleaned.split())[:limit]


def status_line(status: int) -> str:
    """``HTTP 500 Internal Server Error``: the code and its standard phrase, never what
    the receiver wrote (its body or reason phrase could be anything it holds)."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def post(url: str, body: bytes, headers: dict[str, str], timeout: float,
         addresses: AddressPolicy) -> Outcome:
    """POST ``body`` to ``url`` once: only to an address ``addresses`` allows, resolved
    once and connected to as checked; no redirects followed (a 3xx is a failure), no
    proxy, ``timeout`` seconds for the connection and for each read. Certificates are
    verified for https. The answer's body is not read. Blocking-style I/O: green under
    eventlet or gevent."""
    try:
        url = check_url(url)  # rows stored before URLs were encoded on saving
    except PatchbayError as exc:
        return Outcome(error=_printable(f"invalid url: {exc.message}", 255), final=True)
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        targets = addresses.resolve(host, port)
    except AddressRefused as exc:
        return Outcome(error=_printable(f"refused: {exc}", 255), final=True)
    except OSError as exc:
        return Outcome(error=_printable(f"cannot resolve {host}: {exc}", 255))
    headers = dict(headers)
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = PinnedHTTPSConnection(host, port, targets, timeout,
                                           ssl.create_default_context())
    else:
        connection = PinnedHTTPConnection(host, port, targets, timeout)
    return _request(connection, target, body, headers, timeout)


def _request(connection: http.client.HTTPConnection, target: str, body: bytes,
             headers: dict[str, str], timeout: float) -> Outcome:
    """Send the POST on ``connection`` (not yet connected) and close it."""
    try:
        connection.request("POST", target, body=body, headers=headers)
        status = connection.getresponse().status
    except TimeoutError:
        return Outcome(error=f"timed out after {timeout:g} s")
    except ssl.SSLError as exc:
        return Outcome(error=_printable(f"TLS: {exc}", 255))
    except http.client.HTTPException as exc:  # its text would quote what was received
        return Outcome(error=f"{type(exc).__name__}: the answer is not valid HTTP")
    except OSError as exc:
        return Outcome(error=_printable(f"{type(exc).__name__}: {exc}", 255))
    finally:
        connection.close()
    if 200 <= status < 300:
        return Outcome(status)
    return Outcome(status, status_line(status))
