"""A chat channel's words for the event types it posts: one line, in the channel's markup.

Each function is one type's ``chat`` form in the catalogue (:mod:`tasks.events.catalogue`);
what the line says besides the event (the job's title, who started it, the server's row)
and how a quoted value is escaped come with a :class:`ChatContext` from the destination
(services.webhooks.payloads.slack).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChatContext:
    """What a chat line says besides the event: the job's ``title`` as the destination
    shows it (a link, in its markup), who started it, its status, the server's row (a
    ``host_finished``: ``name``, ``failed_step``, ``exit_code``, ``reason``), and
    ``quote``, which escapes a quoted value for the destination's markup."""

    title: str
    created_by: str | None
    job_status: str | None
    host: dict[str, Any] | None
    quote: Callable[[Any], str]


ChatText = Callable[[dict[str, Any], ChatContext], str]
CHAT_REASON_CHARS = 300  # a reason quoted in a chat line is cut to this many characters


def job_started(data: dict[str, Any], context: ChatContext) -> str:
    servers = len(data.get("servers") or [])
    who = f" by {context.quote(context.created_by)}" if context.created_by else ""
    return f":rocket: {context.title} started on {servers} server(s){who}"


def host_failed(_data: dict[str, Any], context: ChatContext) -> str:
    """A failed server, as its row says (the event's data is not quoted)."""
    host, quote = context.host or {}, context.quote
    text = f":x: {context.title}: server {quote(host.get('name'))} failed"
    if host.get("failed_step"):
        text += f" at step {quote(host['failed_step'])}"
    if host.get("exit_code") is not None:
        text += f" (exit {host['exit_code']})"
    if host.get("reason"):
        text += f": {quote(host['reason'])[:CHAT_REASON_CHARS]}"
    return text


_CHAT_ICON = {"succeeded": ":white_check_mark:", "failed": ":x:"}


def job_finished(data: dict[str, Any], context: ChatContext) -> str:
    quote = context.quote
    status = data.get("status", context.job_status)
    icon = _CHAT_ICON.get(status, ":warning:")
    counts = ", ".join(f"{count} {state}" for state, count in
                       sorted((data.get("counts") or {}).items()))
    text = f"{icon} {context.title} finished: {quote(status)}"
    if counts:
        text += f" ({quote(counts)})"
    if data.get("reason"):
        text += f": {quote(data['reason'])[:CHAT_REASON_CHARS]}"
    return text

