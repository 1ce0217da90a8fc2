"""Where a webhook may connect: the console's own networks are out of reach.

A webhook URL is typed by an admin, but its host name is answered by whoever runs its
DNS, and the console sits inside the network it manages: loopback (its own API, a local
Redis), private and link-local networks (cloud metadata at 169.254.169.254), and the
IPv6 spellings of those (``::ffff:127.0.0.1``, 6to4, NAT64). :class:`AddressPolicy`
refuses them all unless ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS`` names the network.

The name is resolved once per attempt, every address checked, and the connection made
to a checked address (:class:`PinnedHTTPConnection`): resolving again to connect would
let DNS answer differently the second time (rebinding). The Host header, TLS's SNI and
the certificate check still use the URL's host name.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from services.networks import Network, parse_networks

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTING = "PATCHBAY_WEBHOOK_ALLOW_NETWORKS"
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: a.b.c.d behind it


class AddressRefused(Exception):
    """A host whose addresses are all out of reach; the message says which and why."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses deliveries may connect to: the globally routable ones, and those
    in ``allowed``."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_setting(cls, value: str | Iterable[str] | None) -> AddressPolicy:
        """``PATCHBAY_WEBHOOK_ALLOW_NETWORKS``: comma-separated CIDR networks (an address
        is a network of one); :class:`RuntimeError` naming the first invalid entry."""
        networks = parse_networks(value, SETTING)
        return cls(tuple(networks))

    def refusal(self, address: Address) -> str | None:
        """Why a delivery may not connect to ``address`` (``"a loopback address"``…),
        or None if it may."""
        embedded = _embedded_ipv4(address)
        if any(candidate in network for network in self.allowed
               for candidate in (address, embedded) if candidate is not None):
            return None
        if embedded is not None:
            kind = _kind(embedded)
            if kind:
                return f"{kind} address ({embedded} in IPv6 form)"
            if address.ipv4_mapped is not None or address in IPV4_COMPATIBLE \
                    or address in NAT64:
                return None  # only another spelling of a public IPv4 address
        kind = _kind(address)
        return f"{kind} address" if kind else None

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` a delivery may connect to, in the resolver's
        order. :class:`OSError` if the name does not resolve; :class:`AddressRefused`
        if none of its addresses may be reached."""
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except UnicodeError as exc:  # a label the resolver cannot encode
            raise OSError(f"invalid host name ({exc})") from None
        usable: list[str] = []
        refused: list[tuple[str, str]] = []
        for *_, sockaddr in found:
            text = str(sockaddr[0])
            reason = self.refusal(ipaddress.ip_address(text.split("%", 1)[0]))
            if reason:
                refused.append((text, reason))
            elif text not in usable:
                usable.append(text)
        if usable:
            return usable
        if not refused:
            raise OSError(f"{host} has no address")
        address, reason = refused[0]
        where = f"{host} is {reason}" if _is_ip(host) \
            else f"{host} resolves to {address}, {reason}"
        raise AddressRefused(f"{where}: webhooks may not reach the console's own networks "
                             f"unless {SETTING} allows them")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


PUBLIC_ONLY = AddressPolicy()  # the default: no network of the console's own allowed


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if (address in IPV4_COMPATIBLE and int(address) > 1) or address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: Address) -> str | None:
    """What kind of address outside the public internet ``address`` is, if it is one
    (``"a loopback"``)."""
    checks = (("an unspecified", address.is_unspecified), ("a loopback", address.is_loopback),
              ("a link-local", address.is_link_local), ("a multicast", address.is_multicast),
              ("a private", address.is_private), ("a reserved", address.is_reserved),
              ("a non-public", not address.is_global))
    return next((kind for kind, hit in checks if hit), None)


def open_socket(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of ``addresses`` (IP literals: nothing is looked
    up) that answers."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection that goes to addresses already checked, never resolving
    ``host`` again; the Host header still names ``host``."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        self.sock = open_socket(self.addresses, self.port, self.timeout)


class PinnedHTTPSConnection(PinnedHTTPConnection):
    """:class:`PinnedHTTPConnection` over TLS: SNI and the certificate check are for
    ``host``, with the system's CA store."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float,
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, addresses, timeout)
        self.context = context or ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
