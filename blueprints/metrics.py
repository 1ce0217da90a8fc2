"""``GET /metrics``: this process's Prometheus metrics (:mod:`tasks.metrics`,
``docs/metrics.md``).

Admins may read them (a browser session or an admin API token): its rule in
``blueprints.permissions.HTTP_RULES`` is ``admin``. A Prometheus server cannot log in,
so the door also opens to client addresses in ``PATCHBAY_METRICS_ALLOW``
(comma-separated addresses or CIDR networks; none by default). The address is
``request.remote_addr``: behind ``PATCHBAY_TRUSTED_PROXIES`` proxies, the client's as
the proxies forwarded it. An invalid entry stops the app from starting.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from flask import Blueprint, Flask, Response, request
from prometheus_client.exposition import choose_encoder

from blueprints import permissions
from tasks.metrics import REGISTRY

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """The text format Prometheus asks for (OpenMetrics or the classic one)."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(REGISTRY), headers={"Content-Type": content_type})


def parse_allow_list(value: str | Iterable[str] | None) -> list[Network]:
    """``PATCHBAY_METRICS_ALLOW`` as networks (an address is a network of one);
    :class:`RuntimeError` naming the first invalid entry."""
    entries = value.split(",") if isinstance(value, str) else list(value or [])
    networks = []
    for entry in (str(e).strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise RuntimeError(
                f"PATCHBAY_METRICS_ALLOW: {entry!r} is not an IP address or CIDR network "
                f"({exc})") from None
    return networks


def address_allowed(address: str | None, networks: list[Network]) -> bool:
    """Whether ``address`` (as ``request.remote_addr`` gives it) is in ``networks``."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return any(ip in network for network in networks)


def register(app: Flask) -> None:
    """Serve ``/metrics``, open to the configured addresses (called by ``create_app``)."""
    networks = parse_allow_list(app.config["METRICS_ALLOW"])
    if networks:
        permissions.open_to(app, "metrics.scrape",
                            lambda: address_allowed(request.remote_addr, networks))
    app.register_blueprint(bp)
