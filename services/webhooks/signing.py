"""How a delivery is signed (docs/webhooks.md, "Verifying a delivery"): the HMAC-SHA256
of the exact body with the webhook's secret, in the ``X-Patchbay-Signature`` header."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Patchbay-Signature"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Patchbay-Signature`` value: ``sha256=`` and the hex HMAC of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
