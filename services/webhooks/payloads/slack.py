"""The ``slack`` format: ``{"text": …}``, one line for a chat channel (Slack's and
Mattermost's incoming webhooks), in Slack's markup: ``<url|title>`` links, emoji codes,
and ``&``, ``<``, ``>`` escaped in everything the line quotes."""

from __future__ import annotations

from typing import Any

from services.webhooks.payloads.registry import register


@register("slack")
def slack_document(payload: dict[str, Any]) -> dict[str, Any]:
    return {"text": slack_text(payload)}


def _slack_escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(payload: dict[str, Any]) -> str:
    """One line for a chat channel (Slack's and Mattermost's incoming webhooks)."""
    job, data, name = payload["job"], payload["data"], payload["event"]
    title = f"Job #{job['id']} ({_slack_escape(job['runbook'])})"
    if payload["url"]:
        title = f"<{payload['url']}|{title}>"
    if name == "job_started":
        servers = len(data.get("servers") or [])
        who = f" by {_slack_escape(job['created_by'])}" if job["created_by"] else ""
        return f":rocket: {title} started on {servers} server(s){who}"
    if name == "host_failed":
        host = payload["host"] or {}
        text = f":x: {title}: server {_slack_escape(host.get('name'))} failed"
        if host.get("failed_step"):
            text += f" at step {_slack_escape(host['failed_step'])}"
        if host.get("exit_code") is not None:
            text += f" (exit {host['exit_code']})"
        if host.get("reason"):
            text += f": {_slack_escape(host['reason'])[:300]}"
        return text
    status = data.get("status", job["status"])
    icon = {"succeeded": ":white_check_mark:", "failed": ":x:"}.get(status, ":warning:")
    counts = ", ".join(f"{count} {state}" for state, count in
                       sorted((data.get("counts") or {}).items()))
    text = f"{icon} {title} finished: {_slack_escape(status)}"
    if counts:
        text += f" ({_slack_escape(counts)})"
    if data.get("reason"):
        text += f": {_slack_escape(data['reason'])[:300]}"
    return text
