"""A webhook's URL: encoded once, the same way, when it is saved and when it is sent,
and shown in two ways that never reveal what it may hold (a token in its path, a
password in its user info)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import idna

from tasks.errors import PatchbayError

MAX_URL = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
# Kept as they are in a path or query: RFC 3986's delimiters, and escapes already made.
URL_SAFE = "/?:@!$&'()*+,;=-._~%"
USERINFO_SAFE = "!$&'()*+,;=-._~%"
HOST_NAME = re.compile(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?")


def check_url(url: Any) -> str:
    """The URL as it is stored and sent, all ASCII: the host in IDNA form (``bücher.de``
    is ``xn--bcher-kva.de``), the path, query and user info percent-encoded as UTF-8
    (``/ü`` is ``/%C3%BC``), no fragment. Encoding it again changes nothing."""
    if not isinstance(url, str) or not url.strip():
        raise PatchbayError("invalid", "url is required: the address that receives the "
                                       "POSTs", "url")
    url = url.strip()
    if len(url) > MAX_URL:
        raise PatchbayError("invalid", f"url is longer than {MAX_URL} characters", "url")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise PatchbayError("invalid", "url must not contain spaces or control characters",
                            "url")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 literal, a host NFKC would change
        raise PatchbayError("invalid", f"url is not a valid address ({exc})", "url") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise PatchbayError("invalid", "url must be an http:// or https:// address", "url")
    try:
        port = parts.port
    except ValueError:
        raise PatchbayError("invalid", "url has an invalid port", "url") from None
    if not parts.hostname:
        raise PatchbayError("invalid", "url must name a host", "url")
    netloc = _ascii_host(parts.hostname) + (f":{port}" if port is not None else "")
    if parts.username is not None:
        userinfo = quote(parts.username, safe=USERINFO_SAFE)
        if parts.password is not None:
            userinfo += ":" + quote(parts.password, safe=USERINFO_SAFE + ":")
        netloc = f"{userinfo}@{netloc}"
    encoded = urlunsplit((scheme, netloc, quote(parts.path, safe=URL_SAFE),
                          quote(parts.query, safe=URL_SAFE), ""))
    if len(encoded) > MAX_URL:
        raise PatchbayError("invalid", f"url is longer than {MAX_URL} characters once "
                                       "percent-encoded", "url")
    return encoded


def _ascii_host(host: str) -> str:
    """A URL's host (``urlsplit``'s ``hostname``, lower case) as it goes on the wire."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise PatchbayError("invalid", f"url's host [{host}] is not a valid IPv6 "
                                           "address", "url") from None
        return f"[{host}]"
    ascii_host = host
    if not host.isascii():
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise PatchbayError("invalid", f"url's host {host!r} is not a valid "
                                           f"international domain name ({exc})",
                                "url") from None
    if len(ascii_host) > 253 or not HOST_NAME.fullmatch(ascii_host):
        raise PatchbayError("invalid", f"url's host {host!r} is not a valid host name "
                                       "(letters, digits, '-' and '.', labels of at most "
                                       "63 characters)", "url")
    return ascii_host


def shown_url(url: str) -> str:
    """The URL for admins' pages and answers: any user name and password masked
    (``https://***@host/path``). The stored URL keeps them for Basic authentication."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def safe_url(url: str) -> str:
    """The URL for logs and the audit log: scheme, host and port only. Paths and
    queries often hold a token (Slack's incoming webhooks do), user info a password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    tail = "/…" if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{tail}"
