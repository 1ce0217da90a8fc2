"""A webhook's settings as an admin gives them (the API's JSON, the page's form),
checked field by field: a :class:`PatchbayError` names the field that is wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from services.webhooks.address import PUBLIC_ONLY, AddressPolicy, AddressRefused
from services.webhooks.payloads import FORMATS
from services.webhooks.rules import EVENTS
from services.webhooks.urls import DEFAULT_PORTS, check_url
from tasks.errors import PatchbayError

SECRET_LENGTH = (16, 256)


@dataclass(frozen=True)
class HookSpec:
    """A webhook as an admin asked for it, checked."""

    url: str
    events: tuple[str, ...]
    secret: str | None = field(default=None, repr=False)
    format: str = "json"


def parse_hook(payload: Any, *, addresses: AddressPolicy = PUBLIC_ONLY) -> HookSpec:
    """Check ``{"url", "events", "secret"?, "format"?}``, the URL also against
    ``addresses`` (the node's ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS``); a
    :class:`PatchbayError` naming the field otherwise."""
    if not isinstance(payload, dict):
        raise PatchbayError("invalid", "the body must be a JSON object")
    unknown = sorted(set(payload) - {"url", "events", "secret", "format"})
    if unknown:
        raise PatchbayError("invalid", f"unknown field {unknown[0]!r}", unknown[0])
    spec = HookSpec(url=check_url(payload.get("url")),
                    events=check_events(payload.get("events")),
                    secret=check_secret(payload.get("secret")),
                    format=check_format(payload.get("format", "json")))
    check_destination(spec.url, addresses)
    return spec


def check_destination(url: str, addresses: AddressPolicy) -> None:
    """Refuse a (checked) URL whose host resolves to an address deliveries may not
    reach. A name that does not resolve now is accepted: every attempt checks again,
    as DNS may change between saving and sending."""
    parts = urlsplit(url)
    try:
        addresses.resolve(parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme])
    except AddressRefused as exc:
        raise PatchbayError("invalid", f"url refused: {exc}", "url") from None
    except OSError:
        pass


def check_events(events: Any) -> tuple[str, ...]:
    if not isinstance(events, list) or not events:
        raise PatchbayError("invalid", f"events must be a non-empty list of: "
                                       f"{', '.join(EVENTS)}", "events")
    for name in events:
        if name not in EVENTS:
            shown = name if isinstance(name, str) else type(name).__name__
            raise PatchbayError("invalid", f"events: unknown event {shown!r} (choose from "
                                           f"{', '.join(EVENTS)})", "events")
    return tuple(name for name in EVENTS if name in events)


def check_secret(secret: Any) -> str | None:
    if secret is None or secret == "":
        return None
    shortest, longest = SECRET_LENGTH
    if not isinstance(secret, str) or not shortest <= len(secret) <= longest:
        raise PatchbayError("invalid", f"secret must be {shortest} to {longest} characters "
                                       "(or left out: deliveries are then not signed)",
                            "secret")
    return secret


def check_format(format_: Any) -> str:
    # FORMATS is a dict: a list or an object from the JSON body is not a key to look up.
    if not isinstance(format_, str) or format_ not in FORMATS:
        raise PatchbayError("invalid", f"format must be one of {', '.join(FORMATS)}",
                            "format")
    return str(format_)
