"""Job, server and step counts from the event log, into the metrics of
:mod:`tasks.meters`. ``GET /metrics`` serves them (``docs/metrics.md``).

Each node counts only what it did itself: the jobs it owns, the SSH connections it
opened, the sockets it holds. Prometheus adds the nodes up. The metric objects are
:mod:`tasks.meters`'s, created once at import.

Jobs, servers and steps are counted from the event log, the one place that sees every
event once, after it is committed, on the node that owns the job:
:class:`EventMetrics` is the :class:`~tasks.events.writer.EventLog`'s observer. Labels stay
bounded: a runbook name (the runbook directory bounds them; ad-hoc commands are
``adhoc``), a status from the engine's few, and for servers a reason from
:data:`~tasks.meters.HOST_REASONS` (:func:`host_reason`), never the free-text reason of the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Job
from tasks.meters import (
    EVENTS_WRITTEN,
    HOST_STATUSES,
    HOSTS_FINISHED,
    JOB_STATUSES,
    JOBS_FINISHED,
    JOBS_STARTED,
    OTHER,
    STEP_DURATION,
    STEP_STATUSES,
    watch_queue,
)

if TYPE_CHECKING:
    from tasks.events.writer import EventLog


def instrument(event_log: EventLog, session_factory: sessionmaker[Session]) -> None:
    """Count what ``event_log`` writes (:class:`EventMetrics` as its observer) and its
    queue (in :data:`EVENT_QUEUE_DEPTH`, while it exists)."""
    event_log.observe = EventMetrics(session_factory)
    watch_queue(event_log)


def _bounded(value: Any, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else OTHER


def host_reason(data: dict[str, Any]) -> str:
    """The :data:`~tasks.meters.HOST_REASONS` word for a ``host_finished`` event's data.

    Read from the outcomes :mod:`tasks.running.outcomes` records: the
    status, ``failed_step`` and ``lost`` fields, and the fixed start of the reasons of
    an internal error, a timeout and the output limit."""
    status = data.get("status")
    reason = str(data.get("reason") or "")
    if status == "succeeded":
        return "ok"
    if status in ("cancelled", "skipped", "interrupted"):
        return status
    if status != "failed":
        return OTHER
    if reason.startswith("internal error"):
        return "internal"
    if data.get("lost"):
        return "lost"
    if data.get("failed_step") == "connect" and "exit_code" not in data:
        return "connect"  # a step's failure always records its exit code (maybe None)
    if reason.startswith("timed out after"):
        return "timeout"
    if reason.startswith("stopped") and "its output passed the limit" in reason:
        return "output_limit"
    return "step_failed"


class EventMetrics:
    """The event log's observer: counts each batch of written events into the metrics.

    Called by the one writer task only. A job's runbook is remembered from its
    ``job_started`` until its ``job_finished``; a job this process did not see start
    (resumed after a restart, taken over from another node) is looked up once."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self._runbooks: dict[int, str] = {}

    def __call__(self, events: list[tuple[int, dict[str, Any]]]) -> None:
        EVENTS_WRITTEN.inc(len(events))
        for job_id, event in events:
            kind, data = event["type"], event["data"]
            if kind == "job_started":
                runbook = str(data.get("runbook") or data.get("kind") or "unknown")
                self._runbooks[job_id] = runbook
                JOBS_STARTED.labels(runbook).inc()
            elif kind == "step_finished" and isinstance(data.get("duration"), int | float):
                STEP_DURATION.labels(_bounded(data.get("status"), STEP_STATUSES)) \
                    .observe(data["duration"])
            elif kind == "host_finished":
                HOSTS_FINISHED.labels(_bounded(data.get("status"), HOST_STATUSES),
                                      host_reason(data)).inc()
            elif kind == "job_finished":
                runbook = self._runbooks.pop(job_id, None) or self._runbook_of(job_id)
                JOBS_FINISHED.labels(runbook, _bounded(data.get("status"),
                                                       JOB_STATUSES)).inc()

    def _runbook_of(self, job_id: int) -> str:
        with self.session_factory() as session:
            return session.scalar(select(Job.runbook).where(Job.id == job_id)) or "unknown"
