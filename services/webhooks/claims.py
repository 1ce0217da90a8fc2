"""Claims: how nodes sharing one database split the due deliveries between them.

A node claims due deliveries with a conditional UPDATE (its candidates picked ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), so of several nodes exactly one sends a given
attempt. A claim is a lease: a node that dies mid-send leaves the delivery due again
when its lease ends, and a node that was only slow finds its result refused (the claim
token no longer matches)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Webhook, WebhookDelivery, utcnow
from services.webhooks.signing import SIGNATURE_HEADER, sign

PER_HOOK_IN_FLIGHT = 4  # attempts at once to one webhook, per node
DUE = ("pending", "sending")  # "sending" is due again once its claim's lease has ended
FINISHED = ("delivered", "given_up")


@dataclass(frozen=True)
class Claimed:
    """A delivery this node holds for one attempt."""

    id: int
    webhook_id: int
    uid: str
    event: str
    claim: str
    attempts: int
    created_at: datetime
    url: str = field(repr=False)
    secret: str | None = field(repr=False)
    body: str = field(repr=False)

    def headers(self, user_agent: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": user_agent,
                   "X-Patchbay-Event": self.event, "X-Patchbay-Delivery": self.uid,
                   "X-Patchbay-Attempt": str(self.attempts)}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, self.body.encode())
        return headers


def claim_due(sessions: sessionmaker[Session], node_id: str, lease: float, limit: int,
              busy: dict[int, int]) -> list[Claimed]:
    """Take up to ``limit`` due deliveries (at most :data:`PER_HOOK_IN_FLIGHT` per
    webhook, counting ``busy``) for one attempt each, for ``lease`` seconds. Of several
    nodes claiming at once, each delivery goes to exactly one: the UPDATE re-checks that
    it is still due, under the row's lock."""
    now = utcnow()
    due = (WebhookDelivery.status.in_(DUE), WebhookDelivery.next_attempt_at <= now)
    with sessions() as session:
        hooks = session.execute(
            select(WebhookDelivery.webhook_id).where(*due)
            .group_by(WebhookDelivery.webhook_id)
            .order_by(func.min(WebhookDelivery.next_attempt_at))).scalars().all()
    token = uuid.uuid4().hex
    with sessions() as session, session.begin():
        for hook_id in hooks:
            room = min(PER_HOOK_IN_FLIGHT - busy.get(hook_id, 0), limit)
            if room <= 0:
                continue
            limit -= _claim_of_hook(session, hook_id, room, token, node_id,
                                    now, now + timedelta(seconds=lease))
            if limit <= 0:
                break
        rows = session.execute(
            select(WebhookDelivery, Webhook.url, Webhook.secret)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.claim == token).order_by(WebhookDelivery.id)).all()
        return [Claimed(row.id, row.webhook_id, row.uid, row.event, token, row.attempts,
                        row.created_at, url, secret, row.body)
                for row, url, secret in rows]


def _claim_of_hook(session: Session, hook_id: int, room: int, token: str, node_id: str,
                   now: datetime, lease_ends: datetime) -> int:
    """Claim up to ``room`` of one webhook's due deliveries with ``token``: how many."""
    due = (WebhookDelivery.status.in_(DUE), WebhookDelivery.next_attempt_at <= now)
    # Picked first, then updated: PostgreSQL may run a LIMIT subquery inside the
    # UPDATE more than once, and claim more than ``room``.
    candidates = session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.webhook_id == hook_id, *due)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(room).with_for_update(skip_locked=True)).all()
    if not candidates:
        return 0
    return session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(candidates), *due)
        .values(status="sending", claim=token, claimed_by=node_id,
                attempts=WebhookDelivery.attempts + 1, last_attempt_at=now,
                next_attempt_at=lease_ends)
        .execution_options(synchronize_session=False)).rowcount


def store_outcome(sessions: sessionmaker[Session], delivery: Claimed,
                  values: dict[str, Any]) -> bool:
    """Write an attempt's result, if this node still holds the claim: False if not (its
    lease ended and another node took the delivery, or the webhook was deleted)."""
    with sessions() as session, session.begin():
        return session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id, WebhookDelivery.claim == delivery.claim)
            .values(**values).execution_options(synchronize_session=False)).rowcount == 1


def prune_finished(sessions: sessionmaker[Session], retention: float) -> int:
    """Forget finished deliveries older than ``retention`` seconds: how many."""
    cutoff = utcnow() - timedelta(seconds=retention)
    with sessions() as session, session.begin():
        return session.execute(
            delete(WebhookDelivery)
            .where(WebhookDelivery.status.in_(FINISHED), WebhookDelivery.created_at < cutoff)
            .execution_options(synchronize_session=False)).rowcount
