"""Applying written events to the derived state: ``Job``, ``JobHost``, ``Server``,
``ServerLock``, ``ServerBuild`` (a server's build history).

The event writer calls this in the same transaction as the events' insert, so state and
log never disagree. A batch's rows are loaded once for the whole batch (a query per
event was most of the writer's time in a fan-out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import Job, JobHost, Server, ServerBuild, ServerLock, utcnow
from tasks.events.catalogue import GATE_EVENTS

HOST_STATE_EVENTS = ("host_started", "step_started", "host_finished")


@dataclass
class BatchRows:
    """The rows a batch of events changes, each loaded once for the batch (a query
    per event was most of the writer's time in a fan-out), and the server locks its
    finished hosts release, deleted in one statement per job."""

    jobs: dict[int, Job] = field(default_factory=dict)
    hosts: dict[tuple[int, str], JobHost] = field(default_factory=dict)
    servers: dict[int, Server] = field(default_factory=dict)
    released: dict[int, list[int]] = field(default_factory=dict)  # job id: server ids

    def release_locks(self, session: Session) -> None:
        for job_id, server_ids in self.released.items():
            session.execute(delete(ServerLock).where(ServerLock.job_id == job_id,
                                                     ServerLock.server_id.in_(server_ids)))



def batch_rows(session: Session, events: list[tuple[int, dict[str, Any]]],
               jobs: dict[int, Job]) -> BatchRows:
    """The job-host rows and servers a batch's ``(job_id, event)`` pairs change, a query
    each, with its ``jobs`` (loaded already)."""
    rows = BatchRows(jobs=jobs)
    wanted = {(job_id, event["host"]) for job_id, event in events
              if event["host"] is not None and event["type"] in HOST_STATE_EVENTS}
    if not wanted:
        return rows
    found = session.scalars(select(JobHost).where(
        JobHost.job_id.in_({job_id for job_id, _ in wanted}),
        JobHost.name.in_({name for _, name in wanted})))
    rows.hosts = {(row.job_id, row.name): row for row in found
                  if (row.job_id, row.name) in wanted}
    finishing = {(job_id, event["host"]) for job_id, event in events
                 if event["type"] == "host_finished"}
    server_ids = {row.server_id for key, row in rows.hosts.items()
                  if key in finishing and row.server_id is not None}
    if server_ids:
        rows.servers = {server.id: server for server in session.scalars(
            select(Server).where(Server.id.in_(server_ids)))}
    return rows


def apply_event(session: Session, job_id: int, event: dict[str, Any],
                rows: BatchRows) -> None:
    """Update the derived state for one event (inside the writer's transaction), on
    the rows :func:`batch_rows` loaded for its batch."""
    kind, data = event["type"], event["data"]
    job = rows.jobs.get(job_id) or session.get(Job, job_id)
    if job is None:
        return
    job.last_seq = max(job.last_seq, event["seq"])
    if kind == "job_finished":
        job.status = data["status"]
        job.finished_at = utcnow()
        session.execute(delete(ServerLock).where(ServerLock.job_id == job_id))
        return
    if kind in GATE_EVENTS:
        # Paused at a manual gate, or going on: a decision is used once.
        job.status = "paused" if kind == "job_paused" else "running"
        job.gate_request = None
        job.gate_request_by_id = None
        return
    if event["host"] is None or kind not in HOST_STATE_EVENTS:
        return
    host = rows.hosts.get((job_id, event["host"]))
    if host is None:
        return
    if kind == "host_started":
        host.status = "running"
        host.started_at = utcnow()
    elif kind == "step_started":
        host.current_step = data.get("step")
    elif kind == "host_finished":
        _finish_host(session, job_id, host, data, rows)


def _finish_host(session: Session, job_id: int, host: JobHost, data: dict[str, Any],
                 rows: BatchRows) -> None:
    """A server's ``host_finished``: its row's outcome; its lock goes and its server
    records the job (when it started there), and the build it reported in it, with the
    job's outcome there, goes into its build history."""
    host.status = data["status"]
    host.finished_at = utcnow()
    host.current_step = None
    host.failed_step = data.get("failed_step")
    host.exit_code = data.get("exit_code")
    host.reason = data.get("reason")
    if host.server_id is None:
        return
    rows.released.setdefault(job_id, []).append(host.server_id)
    server = rows.servers.get(host.server_id)
    if server is not None and host.started_at is not None:
        _record_on_server(server, job_id, data)
        reported = (data.get("facts") or {}).get("version")
        if reported is not None:
            session.add(ServerBuild(server_id=server.id, job_id=job_id,
                                    version=str(reported)[:64], status=data["status"]))


def _record_on_server(server: Server, job_id: int, data: dict[str, Any]) -> None:
    """The server's last job and status, and the facts its steps reported."""
    server.last_job_id = job_id
    server.last_status = data["status"]
    old = server.facts or {}
    facts = {**old, **(data.get("facts") or {})}
    # The build it ran before: kept while the version stays, replaced when a
    # different version is reported (so a rollback swaps the two).
    if old.get("version") is not None and facts.get("version") != old["version"]:
        facts["previous_version"] = old["version"]
    # Whether the version stands (tasks.running.job_run.version_state), and by which
    # job: only a version the server reported can be verified or not.
    if data.get("version_state") and facts.get("version") is not None:
        facts.update(version_state=data["version_state"], version_job_id=job_id)
    if facts != (server.facts or {}):
        server.facts = facts
