"""Transitional: the names ``app.py`` (and ``services/console.py``) import from here,
until they import them from :mod:`services.webhooks` (issue 24); delete it then."""

from services.webhooks.outbox import Outbox
from services.webhooks.settings import WebhookSettings
from services.webhooks.worker import DeliveryWorker

__all__ = ["DeliveryWorker", "Outbox", "WebhookSettings"]
