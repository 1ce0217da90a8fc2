"""The table of payload formats, and the one way a body is made from a payload.

Each format module registers a function with :func:`register`; :func:`render_body` looks
the webhook's format up here. Kept apart from the format modules so that they can import
it without importing each other."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Document = Callable[[dict[str, Any]], Any]

DEFAULT_FORMAT = "json"


@dataclass(frozen=True)
class PayloadFormat:
    """A format a webhook may choose: its name, as stored in ``webhooks.format``, and
    what it makes of a payload (docs/webhooks.md, "Payload"): the JSON document sent."""

    name: str
    document: Document


FORMATS: dict[str, PayloadFormat] = {}  # in the order admins are offered them


def register(name: str) -> Callable[[Document], Document]:
    """Decorate a format's ``payload -> document`` function to offer it as ``name``."""

    def add(document: Document) -> Document:
        if name in FORMATS:
            raise ValueError(f"payload format {name!r} is registered twice")
        FORMATS[name] = PayloadFormat(name, document)
        return document

    return add


def render_body(format_: str, payload: dict[str, Any]) -> str:
    """The exact text POSTed (and signed): compact JSON, ASCII only. A format no module
    registers (a row older than its removal) is sent as JSON."""
    chosen = FORMATS.get(format_) or FORMATS[DEFAULT_FORMAT]
    return json.dumps(chosen.document(payload), separators=(",", ":"))
