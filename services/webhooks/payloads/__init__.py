"""The bodies a webhook can be sent, one small module per format (as redash's
destinations are): each turns the payload of docs/webhooks.md ("Payload",
:mod:`.payload`) into the JSON document POSTed, and registers itself in :data:`FORMATS`
with ``@register("name")``.

A new format (Discord, Teams …) is a module here, imported below: the order of these
imports is the order admins are offered the formats in."""

from services.webhooks.payloads import json, slack  # noqa: F401 - importing registers them
from services.webhooks.payloads.payload import build_payload, host_part, job_link, job_part
from services.webhooks.payloads.registry import FORMATS, PayloadFormat, register, render_body

__all__ = ["FORMATS", "PayloadFormat", "build_payload", "host_part", "job_link", "job_part",
           "register", "render_body"]
