"""Webhooks and their delivery log in the database, for admins' pages and the API.
The caller commits (with its audit entry)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models import Webhook, WebhookDelivery, utcnow
from services.webhooks.spec import HookSpec
from tasks.errors import PatchbayError


def create_webhook(session: Session, spec: HookSpec, created_by_id: int | None) -> Webhook:
    """Add a webhook (the caller commits, with its audit entry)."""
    hook = Webhook(url=spec.url, events=list(spec.events), secret=spec.secret,
                   format=spec.format, created_by_id=created_by_id, created_at=utcnow())
    session.add(hook)
    session.flush()
    return hook


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise PatchbayError("not_found", f"no webhook #{webhook_id}")
    return hook


def delete_webhook(session: Session, webhook_id: int) -> Webhook:
    """Remove a webhook and its deliveries, sent or not (the caller commits). A node
    sending one right now finds its claim gone and records nothing."""
    hook = get_webhook(session, webhook_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    session.flush()
    return hook


def list_webhooks(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def delivery_counts(session: Session) -> dict[int, dict[str, int]]:
    """Per webhook, how many of its deliveries are in each status."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(select(WebhookDelivery.webhook_id, WebhookDelivery.status,
                                  func.count()).group_by(WebhookDelivery.webhook_id,
                                                         WebhookDelivery.status))
    for hook_id, status, count in rows:
        counts.setdefault(hook_id, {})[status] = count
    return counts


def delivery_log(session: Session, webhook_id: int, limit: int = 100,
                 before: int | None = None) -> list[WebhookDelivery]:
    """A webhook's deliveries, newest first (``before``: older than that delivery id)."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))
