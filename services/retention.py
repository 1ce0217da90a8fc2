"""Event retention: the event log of a finished job older than N days is removed; the
job itself (status, parameters, servers with their statuses and reasons) stays.

``flask prune-events --older-than DAYS`` prunes once; with
``PATCHBAY_EVENT_RETENTION_DAYS`` above 0 every node also prunes once at start and then
once a day (:class:`RetentionPruner`). Running jobs, and jobs that finished more
recently, are never touched.

A pruned job's log is rewritten to two events, so ``seq`` still runs 1, 2 with no gap:
``events_pruned`` (``days``, ``events``: how many the log held, ``pruned_at``) and a copy
of its ``job_finished`` (when it had one); ``last_seq`` becomes 2. The events are
deleted in batches of :data:`PRUNE_BATCH`, each in a short transaction of its own, and
the last batch goes in the same transaction that writes the two events, so a reader
sees the old log (perhaps shortened from the start) or the new one. Several nodes
pruning at once each skip the jobs another has done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import LIVE_JOB_STATUSES, Job, JobEvent, utcnow

log = logging.getLogger(__name__)

PRUNE_BATCH = 5000  # events deleted per transaction
JOBS_PER_QUERY = 100
PRUNE_INTERVAL = 86_400.0  # seconds between two automatic prunes on one node
PRUNED = "events_pruned"


@dataclass(frozen=True)
class Pruned:
    """One job whose events were removed, and how many."""

    job_id: int
    events: int


def prune_events(sessions: sessionmaker[Session], older_than_days: int,
                 now: datetime | None = None, batch: int | None = None) -> list[Pruned]:
    """Remove the events of every finished job that finished more than
    ``older_than_days`` days before ``now``, ``batch`` events per transaction (default
    :data:`PRUNE_BATCH`); returns what was removed, by job."""
    batch = batch or PRUNE_BATCH
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    done: list[Pruned] = []
    after = 0
    while True:
        with sessions() as session:
            job_ids = list(session.scalars(
                select(Job.id).where(Job.id > after, Job.status.not_in(LIVE_JOB_STATUSES),
                                     Job.finished_at.is_not(None), Job.finished_at < cutoff,
                                     ~_pruned(Job.id))
                .order_by(Job.id).limit(JOBS_PER_QUERY)))
        for job_id in job_ids:
            removed = _prune_job(sessions, job_id, older_than_days, batch)
            if removed is not None:
                done.append(Pruned(job_id, removed))
        if len(job_ids) < JOBS_PER_QUERY:
            return done
        after = job_ids[-1]


def _pruned(job_id: Any) -> Any:
    """Whether a job's log is already the pruned one."""
    return exists().where(JobEvent.job_id == job_id, JobEvent.seq == 1,
                          JobEvent.type == PRUNED)


def _prune_job(sessions: sessionmaker[Session], job_id: int, days: int,
               batch: int) -> int | None:
    """Prune one job; the number of events removed, or None if another process did."""
    with sessions() as session:
        top = session.scalar(select(func.max(JobEvent.seq)).where(JobEvent.job_id == job_id))
        finished = session.execute(
            select(JobEvent.ts, JobEvent.data).where(JobEvent.job_id == job_id,
                                                     JobEvent.type == "job_finished")
            .order_by(JobEvent.seq.desc()).limit(1)).first()
    removed = 0
    low = 0
    while top is not None and low + batch < top:  # all but the last batch, oldest first
        with sessions() as session, session.begin():
            removed += session.execute(delete(JobEvent).where(
                JobEvent.job_id == job_id, JobEvent.seq > low,
                JobEvent.seq <= low + batch)).rowcount or 0
        low += batch
    try:
        with sessions() as session, session.begin():
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.status in LIVE_JOB_STATUSES or session.scalar(
                    select(_pruned(job_id))):
                return None
            removed += session.execute(delete(JobEvent).where(
                JobEvent.job_id == job_id)).rowcount or 0
            replacement = [{
                "job_id": job_id, "seq": 1, "ts": round(time.time(), 3),
                "type": PRUNED, "host": None,
                "data": {"days": days, "events": top or 0,
                         "pruned_at": utcnow().isoformat(timespec="seconds") + "Z"}}]
            if finished is not None:
                replacement.append({"job_id": job_id, "seq": 2, "ts": finished.ts,
                                    "type": "job_finished", "host": None,
                                    "data": finished.data})
            session.execute(insert(JobEvent), replacement)
            job.last_seq = len(replacement)
    except IntegrityError:  # another node wrote the pruned log first
        return None
    return removed


class RetentionPruner:
    """Prunes once at start and then every :data:`PRUNE_INTERVAL` seconds on this node,
    when ``days`` is above 0 (``PATCHBAY_EVENT_RETENTION_DAYS``)."""

    def __init__(self, sessions: sessionmaker[Session], days: int,
                 start_task: Callable[..., Any], interval: float = PRUNE_INTERVAL) -> None:
        self.sessions = sessions
        self.days = days
        self.start_task = start_task
        self.interval = interval
        self._stop = threading.Event()

    def start(self) -> None:
        if self.days > 0:
            self.start_task(self._loop)

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pruned = prune_events(self.sessions, self.days)
            except Exception:  # noqa: BLE001 - tomorrow's prune tries again
                log.exception("pruning events older than %s days failed", self.days)
            else:
                if pruned:
                    log.warning("pruned the events of %d finished job(s) older than %d "
                                "days: %d event(s) removed", len(pruned), self.days,
                                sum(p.events for p in pruned))
            self._stop.wait(self.interval)
