"""``GET /metrics``: this process's Prometheus metrics (:mod:`services.metrics`,
``docs/metrics.md``).

Admins may read them (a browser session or an admin API token): its rule in
``services.auth.permissions.HTTP_RULES`` is ``admin``. A Prometheus server cannot log in,
so the door also opens to client addresses in ``PATCHBAY_METRICS_ALLOW``
(comma-separated addresses or CIDR networks; none by default). The address is
``request.remote_addr``: behind ``PATCHBAY_TRUSTED_PROXIES`` proxies, the client's as
the proxies forwarded it, believed only from ``PATCHBAY_TRUSTED_PROXY_ADDRESSES``
(:mod:`blueprints.http.client_address`). An invalid entry stops the app from starting.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request
from prometheus_client.exposition import choose_encoder

from services.auth import permissions
from services.networks import address_in, parse_networks
from tasks.meters import REGISTRY

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """The text format Prometheus asks for (OpenMetrics or the classic one)."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(REGISTRY), headers={"Content-Type": content_type})


def register(app: Flask) -> None:
    """Serve ``/metrics``, open to the configured addresses (called by ``create_app``)."""
    networks = parse_networks(app.config["METRICS_ALLOW"], "PATCHBAY_METRICS_ALLOW")
    if networks:
        permissions.open_to(app, "metrics.scrape",
                            lambda: address_in(request.remote_addr, networks))
    app.register_blueprint(bp)
