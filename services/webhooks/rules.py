"""Which job events are webhook events, and which webhooks want each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models import Webhook

EVENTS = ("job_started", "job_finished", "host_failed")


def webhook_event(event: dict[str, Any]) -> str | None:
    """The webhook event a job event is, if any: ``job_started``, ``job_finished``, and a
    ``host_finished`` with status ``failed`` (``host_failed``)."""
    kind = event["type"]
    if kind in ("job_started", "job_finished"):
        return kind
    if kind == "host_finished" and (event.get("data") or {}).get("status") == "failed":
        return "host_failed"
    return None


def subscribers(hooks: Iterable[Webhook], name: str) -> list[Webhook]:
    """Those of ``hooks`` subscribed to the webhook event ``name``, in their order."""
    return [hook for hook in hooks if name in hook.events]
