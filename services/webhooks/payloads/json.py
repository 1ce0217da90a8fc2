"""The ``json`` format: the payload of docs/webhooks.md ("Payload") as it is."""

from __future__ import annotations

from typing import Any

from services.webhooks.payloads.registry import register


@register("json")
def json_document(payload: dict[str, Any]) -> dict[str, Any]:
    return payload
