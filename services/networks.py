"""Address lists read from settings, and whether an address is in one.

One parser for every setting that names networks (``PATCHBAY_TRUSTED_PROXY_ADDRESSES``,
``PATCHBAY_METRICS_ALLOW``, ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS``), so each refuses a bad
entry the same way: naming the setting and the entry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str | Iterable[str] | None, setting: str) -> list[Network]:
    """Comma-separated addresses and CIDR networks (an address is a network of one);
    :class:`RuntimeError` naming ``setting`` and the first invalid entry."""
    entries = value.split(",") if isinstance(value, str) else list(value or [])
    networks = []
    for entry in (str(e).strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise RuntimeError(
                f"{setting}: {entry!r} is not an IP address or CIDR network ({exc})"
            ) from None
    return networks


def address_in(address: str | None, networks: list[Network]) -> bool:
    """Whether ``address`` (a peer or ``request.remote_addr``) is in ``networks``."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return any(ip in network for network in networks)
