"""Prometheus metrics of this process (one console node): jobs, servers, steps, SSH,
sockets and the event log. ``GET /metrics`` serves them (``docs/metrics.md``).

Each node counts only what it did itself: the jobs it owns, the SSH connections it
opened, the sockets it holds. Prometheus adds the nodes up. The metric objects are
created once, at import, in :data:`REGISTRY` (this module's own registry, not
prometheus_client's global one), so a test process that builds many apps shares them.

Jobs, servers and steps are counted from the event log, the one place that sees every
event once, after it is committed, on the node that owns the job:
:class:`EventMetrics` is the :class:`~tasks.events.writer.EventLog`'s observer. Labels stay
bounded: a runbook name (the runbook directory bounds them; ad-hoc commands are
``adhoc``), a status from the engine's few, and for servers a reason from
:data:`HOST_REASONS` (:func:`host_reason`), never the free-text reason of the log.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Job

if TYPE_CHECKING:
    from tasks.events.writer import EventLog

JOB_STATUSES = ("succeeded", "failed", "cancelled", "interrupted")
HOST_STATUSES = ("succeeded", "failed", "cancelled", "skipped", "interrupted")
STEP_STATUSES = ("ok", "failed", "cancelled")
# Why a server ended as it did. ok: every step passed; step_failed: a step exited
# non-zero (or was killed); connect: the first connection failed; timeout: a step ran
# past its timeout; output_limit: a step printed past PATCHBAY_MAX_STEP_OUTPUT; lost:
# the connection stayed down past PATCHBAY_REATTACH_TIMEOUT; cancelled, skipped (the
# rollout stopped first), interrupted (the console stopped); internal: a bug.
HOST_REASONS = ("ok", "step_failed", "connect", "timeout", "output_limit", "lost",
                "cancelled", "skipped", "interrupted", "internal", "other")
# Why an SSH connection failed (tasks.transport.ssh.connect_failure_kind) or broke (dropped).
SSH_FAILURE_REASONS = ("auth", "host_key", "refused", "timeout", "unreachable", "dns",
                       "protocol", "dropped", "other")
OTHER = "other"

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_STARTED = Counter(
    "patchbay_jobs_started", "Jobs this node started, by runbook.", ["runbook"],
    registry=REGISTRY)
JOBS_FINISHED = Counter(
    "patchbay_jobs_finished", "Jobs this node finished, by runbook and final status.",
    ["runbook", "status"], registry=REGISTRY)
HOSTS_FINISHED = Counter(
    "patchbay_hosts_finished", "Servers of this node's jobs that reached a final "
    "status, by status and reason.", ["status", "reason"], registry=REGISTRY)
STEP_DURATION = Histogram(
    "patchbay_step_duration_seconds", "How long steps ran (since their start or "
    "re-attach on this node), by outcome.", ["status"], registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
SSH_CONNECT_SECONDS = Histogram(
    "patchbay_ssh_connect_seconds", "Time to open and authenticate an SSH connection "
    "(successful connects only).", registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
SSH_FAILURES = Counter(
    "patchbay_ssh_failures", "SSH connections that failed to open, or broke (dropped), "
    "by reason.", ["reason"], registry=REGISTRY)
SOCKET_CONNECTIONS = Gauge(
    "patchbay_socket_connections", "Socket.IO connections open on this node.",
    registry=REGISTRY)
EVENT_QUEUE_DEPTH = Gauge(
    "patchbay_event_queue_depth", "Events appended and not yet written to the database.",
    registry=REGISTRY)
EVENTS_WRITTEN = Counter(
    "patchbay_events_written", "Job events this node wrote to the database.",
    registry=REGISTRY)
LOGIN_SLOWDOWNS = Counter(
    "patchbay_login_slowdowns", "Times an account's failed logins from any address "
    "reached PATCHBAY_LOGIN_ACCOUNT_SLOWDOWN, so its logins began to wait.",
    registry=REGISTRY)
LOGINS_DELAYED = Counter(
    "patchbay_logins_delayed", "Logins answered after a slow-down delay (right or wrong).",
    registry=REGISTRY)

for _reason in SSH_FAILURE_REASONS:  # every series exists from the start, at 0
    SSH_FAILURES.labels(_reason)

_event_logs: weakref.WeakSet[EventLog] = weakref.WeakSet()
_event_logs_lock = threading.Lock()


def _queue_depth() -> float:
    with _event_logs_lock:
        return float(sum(log.queue_depth() for log in _event_logs))


EVENT_QUEUE_DEPTH.set_function(_queue_depth)


def instrument(event_log: EventLog, session_factory: sessionmaker[Session]) -> None:
    """Count what ``event_log`` writes (:class:`EventMetrics` as its observer) and its
    queue (in :data:`EVENT_QUEUE_DEPTH`, while it exists)."""
    event_log.observe = EventMetrics(session_factory)
    with _event_logs_lock:
        _event_logs.add(event_log)


def _bounded(value: Any, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else OTHER


def host_reason(data: dict[str, Any]) -> str:
    """The :data:`HOST_REASONS` word for a ``host_finished`` event's data.

    Read from the outcomes :mod:`tasks.running.job_run` and :mod:`tasks.engine` record: the
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
