"""Enqueueing: the event writer's hook that queues the deliveries of an event.

:class:`tasks.events.writer.EventLog` calls :class:`Outbox` for every event it writes,
inside its transaction. For each webhook event (:mod:`services.webhooks.rules`) it adds
one ``webhook_deliveries`` row per subscribed webhook, its body built right then. The
event and its deliveries commit together or not at all: nothing is lost when a node
dies, and an event that is never written (a fenced batch) sends nothing."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Job, JobHost, WebhookDelivery, utcnow
from services.webhooks.payloads import build_payload, host_part, job_link, job_part, render_body
from services.webhooks.rules import subscribers, webhook_event
from services.webhooks.store import list_webhooks

log = logging.getLogger(__name__)


class Outbox:
    """The event writer's hook: queue deliveries for the events webhooks want, in the
    writer's transaction (see :class:`tasks.events.writer.EventLog`'s ``on_event``)."""

    def __init__(self, public_url: str | None = None) -> None:
        self.public_url = public_url

    def __call__(self, session: Session, job_id: int, event: dict[str, Any]) -> None:
        name = webhook_event(event)
        if name is None:
            return
        hooks = subscribers(list_webhooks(session), name)
        job = session.get(Job, job_id) if hooks else None
        if job is None:
            return
        host = None
        if name == "host_failed":
            host = host_part(session.scalar(select(JobHost).where(
                JobHost.job_id == job_id, JobHost.name == event["host"])), event)
        job_data, url, now = job_part(job), job_link(self.public_url, job_id), utcnow()
        for hook in hooks:
            uid = uuid.uuid4().hex
            try:
                body = render_body(hook.format, build_payload(name, uid, event, job_data,
                                                              host, url))
            except (TypeError, ValueError):  # a bug here must not stall the event log
                log.exception("webhook %s: building the %s body of job %s failed",
                              hook.id, name, job_id)
                continue
            session.add(WebhookDelivery(
                uid=uid, webhook_id=hook.id, event=name, job_id=job_id, seq=event["seq"],
                body=body, status="pending", attempts=0, created_at=now,
                next_attempt_at=now))
