"""The Prometheus metric objects of this process (one console node), created once, at
import, in :data:`REGISTRY` (this module's own registry, not prometheus_client's global
one), so a test process that builds many apps shares them.

They sit at the bottom of the house so every layer can count what it does (the SSH
transport its connects, the socket door its sockets, the login its slow-downs);
:mod:`services.metrics` turns the event log into job, server and step counts, and
``GET /metrics`` serves them all (``docs/metrics.md``). Labels stay bounded: the
allowed values are the tuples below.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
# Why an SSH connection failed (tasks.transport.connecting.connect_failure_kind) or broke (dropped).
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


def watch_queue(event_log: EventLog) -> None:
    """Count ``event_log``'s queue in :data:`EVENT_QUEUE_DEPTH` while it exists."""
    with _event_logs_lock:
        _event_logs.add(event_log)
