"""Headers on every response: security (no inline script, no framing, no sniffing), and
``X-Patchbay-Node`` naming the node that answered (behind a load balancer, the one to
look at)."""

from __future__ import annotations

from flask import Flask
from werkzeug.wrappers import Response

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "object-src 'none'",
])


def add_security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def register(app: Flask) -> None:
    app.after_request(add_security_headers)
    node_id = str(app.config["NODE_ID"])

    def name_the_node(response: Response) -> Response:
        response.headers["X-Patchbay-Node"] = node_id
        return response

    app.after_request(name_the_node)
