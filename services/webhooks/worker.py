"""Sending: one :class:`DeliveryWorker` per node.

It claims due deliveries (:mod:`services.webhooks.claims`) and sends each attempt in a
task of its own with a short timeout, at most ``concurrency`` at once per node and
:data:`~services.webhooks.claims.PER_HOOK_IN_FLIGHT` per webhook, so a receiver that
hangs holds only its own few slots. Failures are retried with exponential backoff
(:mod:`services.webhooks.retries`) until ``give_up_after`` seconds after the event, then
the delivery is marked ``given_up``. Every delivery ends ``delivered`` or ``given_up``
with a reason, whatever goes wrong while sending."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models import utcnow
from services.webhooks.claims import Claimed, claim_due, prune_finished, store_outcome
from services.webhooks.retries import next_attempt
from services.webhooks.sending import Outcome, Sender, post
from services.webhooks.settings import WebhookSettings
from services.webhooks.urls import safe_url
from tasks.events.write_errors import describe, is_transient
from tasks.nodes.health import Dependency

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between clean-ups of old finished deliveries

TaskStarter = Callable[..., Any]


class DeliveryWorker:
    """One node's sender: claims due deliveries and sends each in a task of its own."""

    def __init__(self, sessions: sessionmaker[Session], node_id: str,
                 settings: WebhookSettings, start_task: TaskStarter,
                 send: Sender = post, database: Dependency | None = None) -> None:
        self.sessions = sessions
        # The database outage is logged once by whoever sees it (tasks.nodes.health), not with
        # a traceback every poll.
        self.database = database or Dependency("database")
        self.node_id = node_id
        self.settings = settings
        self.start_task = start_task
        self.send = send
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # webhook id -> attempts under way here
        self._wakeup = threading.Event()
        self._stop = threading.Event()

    def start(self) -> None:
        """Send due deliveries in a background task until :meth:`stop`."""
        self.start_task(self._run)

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return sum(self._in_flight.values())

    def _run(self) -> None:
        next_prune = time.monotonic()
        while not self._stop.is_set():
            self._wakeup.clear()
            try:
                self.poll()
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + PRUNE_EVERY
            except Exception as error:  # noqa: BLE001 - a database hiccup must not end the sender
                if is_transient(error):
                    self.database.failed(describe(error))
                else:
                    log.exception("webhook sender of node %s: looking for deliveries failed",
                                  self.node_id)
            self._wakeup.wait(self.settings.poll_interval)

    def poll(self) -> list[Claimed]:
        """Claim what is due, as far as free slots allow, and start sending it."""
        with self._lock:
            busy = dict(self._in_flight)
        free = self.settings.concurrency - sum(busy.values())
        if free <= 0:
            return []
        claimed = self.claim(free, busy)
        for delivery in claimed:
            with self._lock:
                self._in_flight[delivery.webhook_id] = \
                    self._in_flight.get(delivery.webhook_id, 0) + 1
            self.start_task(self._deliver, delivery)
        return claimed

    def claim(self, limit: int, busy: dict[int, int] | None = None) -> list[Claimed]:
        """Take up to ``limit`` due deliveries (at most ``PER_HOOK_IN_FLIGHT`` per
        webhook, counting ``busy``) for one attempt each, leased to this node."""
        return claim_due(self.sessions, self.node_id, self.settings.lease, limit,
                         busy or {})

    def _deliver(self, delivery: Claimed) -> None:
        try:
            self.record(delivery, self._attempt(delivery))
        except Exception:  # noqa: BLE001 - the database: the lease ends, another try follows
            log.exception("webhook %s: recording delivery %s failed",
                          delivery.webhook_id, delivery.uid)
        finally:
            with self._lock:
                self._in_flight[delivery.webhook_id] -= 1
                if not self._in_flight[delivery.webhook_id]:
                    del self._in_flight[delivery.webhook_id]
            self._wakeup.set()  # a slot is free: look again now

    def _attempt(self, delivery: Claimed) -> Outcome:
        """Send once. Whatever goes wrong becomes a failed attempt with a reason: left
        unrecorded, the delivery would stay ``sending`` and be claimed again forever."""
        try:
            return self.send(delivery.url, delivery.body.encode(),
                             delivery.headers(self.settings.user_agent),
                             float(self.settings.timeout), self.settings.addresses)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("webhook %s: sending delivery %s failed unexpectedly",
                          delivery.webhook_id, delivery.uid)
            return Outcome(error=f"internal error: {type(exc).__name__} (see the log)")

    def record(self, delivery: Claimed, outcome: Outcome) -> bool:
        """Store an attempt's outcome: delivered, due again later, or given up. False if
        this node no longer held the claim (its lease ended and another node took the
        delivery, or the webhook was deleted): nothing is stored then."""
        now = utcnow()
        values: dict[str, Any] = {"last_status_code": outcome.status_code,
                                  "last_error": outcome.error, "claim": None}
        retry_at = None
        if outcome.ok:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
        else:
            settings = self.settings
            retry_at = None if outcome.final else next_attempt(
                delivery.attempts, now, delivery.created_at, base=settings.retry_base,
                longest=settings.retry_max, give_up_after=settings.give_up_after)
            values.update(status="pending" if retry_at else "given_up",
                          next_attempt_at=retry_at)
        stored = store_outcome(self.sessions, delivery, values)
        if not outcome.ok:
            log.warning("webhook %s: delivery %s (%s) attempt %d failed: %s; %s",
                        delivery.webhook_id, delivery.uid, safe_url(delivery.url),
                        delivery.attempts, outcome.error,
                        f"next attempt at {retry_at:%H:%M:%S} UTC" if retry_at else "given up")
        return stored

    def prune(self) -> int:
        """Forget finished deliveries older than the retention."""
        return prune_finished(self.sessions, self.settings.retention)
