"""The ``slack`` format: ``{"text": …}``, one line for a chat channel (Slack's and
Mattermost's incoming webhooks), in Slack's markup: ``<url|title>`` links, emoji codes,
and ``&``, ``<``, ``>`` escaped in everything the line quotes."""

from __future__ import annotations

from typing import Any

from services.webhooks.payloads.registry import register
from tasks.events.catalogue import describe
from tasks.events.chat_words import ChatContext

# The job event each webhook event is (its chat line is the catalogue's chat form).
JOB_EVENT = {"job_started": "job_started", "host_failed": "host_finished",
             "job_finished": "job_finished"}


@register("slack")
def slack_document(payload: dict[str, Any]) -> dict[str, Any]:
    return {"text": slack_text(payload)}


def _slack_escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(payload: dict[str, Any]) -> str:
    """One line for a chat channel (Slack's and Mattermost's incoming webhooks): the
    event catalogue's chat form, with the job's title as a link when the console has a
    public address."""
    job = payload["job"]
    title = f"Job #{job['id']} ({_slack_escape(job['runbook'])})"
    if job.get("kind") == "rollback":  # "Job #5 (Roll back (game-update): 1.4.8 → 1.4.7)"
        moved = f": {job['builds_words']}" if job.get("builds_words") else ""
        title = f"Job #{job['id']} ({_slack_escape(job.get('title') + moved)})"
    if payload["url"]:
        title = f"<{payload['url']}|{title}>"
    context = ChatContext(title=title, created_by=job.get("created_by"),
                          job_status=job.get("status"), host=payload.get("host"),
                          quote=_slack_escape)
    event = {"type": JOB_EVENT.get(payload["event"], "job_finished"), "data": payload["data"]}
    return describe(event, "chat", context)
