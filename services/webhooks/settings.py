"""How a node sends deliveries (``PATCHBAY_WEBHOOK_*``, see config.DEFAULTS)."""

from __future__ import annotations

from dataclasses import dataclass

from services.webhooks.address import PUBLIC_ONLY, AddressPolicy


@dataclass(frozen=True)
class WebhookSettings:
    """How a node sends deliveries (``PATCHBAY_WEBHOOK_*``, see config.DEFAULTS)."""

    timeout: float = 10
    retry_base: float = 10
    retry_max: float = 900
    give_up_after: float = 3600
    concurrency: int = 20
    poll_interval: float = 1
    retention: float = 30 * 86_400
    user_agent: str = "Patchbay-Webhook"
    addresses: AddressPolicy = PUBLIC_ONLY  # where deliveries may connect

    @property
    def lease(self) -> float:
        """How long a claim holds a delivery: longer than any attempt can take."""
        return 2 * self.timeout + 30
