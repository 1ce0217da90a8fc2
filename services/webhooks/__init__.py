"""Webhooks: tell other systems when a job starts, finishes, or one of its servers fails.

None of this knows Flask (docs/webhooks.md is the contract). The parts, one module each:

* **Rules** (:mod:`.rules`): which job events are webhook events (``job_started``,
  ``job_finished``, and a ``host_finished`` with status ``failed``: ``host_failed``), and
  which webhooks want each. A webhook's settings are checked by :mod:`.spec` (its URL by
  :mod:`.urls`) and kept by :mod:`.store`.
* **Payloads** (:mod:`.payloads`): the payload of an event, and one module per body
  format (JSON, Slack …) behind a registry.
* **Enqueue** (:mod:`.outbox`): the event writer's hook, queueing an event's deliveries
  in the event's own transaction.
* **Send** (:mod:`.worker`, one per node): claims due deliveries (:mod:`.claims`, a
  lease so that of several nodes exactly one sends a given attempt), POSTs each
  (:mod:`.sending`), signed (:mod:`.signing`), and retries failures with backoff
  (:mod:`.retries`) until it gives up. A delivery may therefore arrive twice (at least
  once); receivers deduplicate by its ``delivery`` id.

Where a delivery may connect is :mod:`.address`'s business: not the console's own
networks (unless ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS`` says so), checked when a webhook is
saved and again on every attempt, at the address it connects to. Every delivery ends
``delivered`` or ``given_up`` with a reason, whatever goes wrong while sending; a
receiver's answer is kept as its status line only, never its body.

A webhook's secret signs its deliveries; it is read only to sign, and is never put in
a payload, a log line, an audit entry or an answer.

The names other layers use are importable from this package.
"""

from services.webhooks.claims import PER_HOOK_IN_FLIGHT, Claimed
from services.webhooks.outbox import Outbox
from services.webhooks.payloads import FORMATS, build_payload, render_body
from services.webhooks.retries import next_attempt, retry_delay
from services.webhooks.rules import EVENTS, webhook_event
from services.webhooks.sending import Outcome, post, status_line
from services.webhooks.settings import WebhookSettings
from services.webhooks.signing import SIGNATURE_HEADER, sign
from services.webhooks.spec import SECRET_LENGTH, HookSpec, parse_hook
from services.webhooks.store import (
    create_webhook,
    delete_webhook,
    delivery_counts,
    delivery_log,
    get_webhook,
    list_webhooks,
)
from services.webhooks.urls import MAX_URL, check_url, safe_url, shown_url
from services.webhooks.worker import DeliveryWorker

__all__ = [
    "EVENTS", "FORMATS", "MAX_URL", "PER_HOOK_IN_FLIGHT", "SECRET_LENGTH", "SIGNATURE_HEADER",
    "Claimed", "DeliveryWorker", "HookSpec", "Outbox", "Outcome", "WebhookSettings",
    "build_payload", "check_url", "create_webhook", "delete_webhook", "delivery_counts",
    "delivery_log", "get_webhook", "list_webhooks", "next_attempt", "parse_hook", "post",
    "render_body", "retry_delay", "safe_url", "shown_url", "sign", "status_line",
    "webhook_event",
]
