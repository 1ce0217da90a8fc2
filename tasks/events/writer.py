"""The job event log: append (assign ``seq``), write to the database, then publish.

All event writes go through one writer task that drains a queue and commits each batch
in one short transaction. One writer means no two greenlets ever wait on SQLite's lock
(a wait that runs in C and freezes an eventlet process), and a batch costs one commit
however many servers are talking. An event is published only after its batch has been
committed, so whatever any client has seen can be fetched again from the database.

The writer also applies each event to the derived state (``Job``, ``JobHost``, ``Server``,
``ServerLock``) in the same transaction, so state and log never disagree.

Only a job's owner node writes its events (so ``seq`` needs no lock across nodes). Each
batch re-reads the owner of its jobs under a row lock; events of a job that another node
has taken over meanwhile are dropped, never written, and from then on appending to that
job raises :class:`JobFenced`, which stops this node's run of it without touching the
servers (the new owner has re-attached to them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from models import Job, JobEvent, JobHost, Server, ServerLock, utcnow
from tasks.events.catalogue import GATE_EVENTS
from tasks.events.write_errors import describe, is_transient, minimal_copy, storable_copy

log = logging.getLogger(__name__)

Publisher = Callable[[int, int | None, list[dict[str, Any]]], None]
# Called for each event written, inside the writer's transaction (after the derived
# state is applied), so what it adds commits with the event or not at all (webhooks).
EventHook = Callable[[Session, int, dict[str, Any]], None]
# Sees each written batch as (job_id, event) pairs, after commit (services.metrics counts them).
Observer = Callable[[list[tuple[int, dict[str, Any]]]], None]
TaskStarter = Callable[..., Any]
MAX_BATCH = 2000
# A batch also ends at this many output lines, so a chatty job's commits and messages
# stay small (about a megabyte) instead of one giant transaction and emit per backlog.
MAX_BATCH_LINES = 20_000
# Backpressure: appending output waits while this many lines await the writer (up to
# OUTPUT_WAIT_SECONDS), so a job printing faster than the database takes it slows its
# SSH readers (and so the remote commands) instead of growing this process's memory.
MAX_QUEUED_LINES = 50_000
# The writer writes (and publishes) at most once per this many seconds, gathering what
# every server said meanwhile: 50 servers flushing their output every 0.05 s make a
# thousand small batches a second otherwise, each a commit and a message to every
# watcher. Measured with 50 watchers of 50 ticking servers: the server's CPU fell from
# 55% to 37% of a core and the p95 delivery time from 160 ms to 113-130 ms.
WRITE_INTERVAL = 0.03
OUTPUT_WAIT_SECONDS = 10.0


class JobFenced(BaseException):  # noqa: N818 - not an error: the job moved on
    """This node no longer owns the job (another node took it over): stop running it.

    A ``BaseException``, so the "fail visibly" handlers of a run (``except Exception``)
    let it through instead of trying to record a failure they may not write."""


@dataclass
class _Pending:
    job_id: int
    event: dict[str, Any]
    lines: int = 0


class EventLog:
    """Per-job sequence numbers, one batching writer, publish after commit."""

    def __init__(self, session_factory: sessionmaker[Session], publisher: Publisher,
                 start_task: TaskStarter, node_id: str | None = None,
                 on_fenced: Callable[[int], None] | None = None,
                 on_event: EventHook | None = None) -> None:
        self.session_factory = session_factory
        self.publisher = publisher
        self.start_task = start_task
        self.node_id = node_id  # None: one process, no ownership to check
        self.on_fenced = on_fenced
        self.on_event = on_event
        self.observe: Observer | None = None  # set by services.metrics.instrument
        self._fenced: set[int] = set()
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: list[_Pending] = []
        self._next_seq: dict[int, int] = {}
        self._owners: dict[int, int | None] = {}
        self._appended = 0
        self._written = 0
        self._queued_lines = 0
        self._writer_started = False

    def open_job(self, job_id: int, owner_id: int | None, last_seq: int = 0) -> None:
        """Start numbering a job's events after ``last_seq``."""
        with self._lock:
            self._next_seq[job_id] = last_seq + 1
            self._owners[job_id] = owner_id
            self._fenced.discard(job_id)

    def append(self, job_id: int, type_: str, host: str | None = None,
               data: dict[str, Any] | None = None) -> int:
        """Queue one event; returns its ``seq``. It is published once it is on disk.
        Raises :class:`JobFenced` once another node has taken the job over."""
        lines = len(data["lines"]) if type_ == "output" and data else 0
        with self._lock:
            if job_id in self._fenced:
                raise JobFenced(job_id)
            if lines and self._writer_started:
                deadline = time.monotonic() + OUTPUT_WAIT_SECONDS
                while self._queued_lines >= MAX_QUEUED_LINES \
                        and time.monotonic() < deadline:
                    self._wakeup.wait(0.5)
            seq = self._next_seq[job_id]
            self._next_seq[job_id] = seq + 1
            self._queue.append(_Pending(job_id, {
                "seq": seq, "ts": round(time.time(), 3), "type": type_, "host": host,
                "data": data or {},
            }, lines))
            self._appended += 1
            self._queued_lines += lines
            if not self._writer_started:
                self._writer_started = True
                self.start_task(self._writer_loop)
            self._wakeup.notify_all()
        return seq

    def wait_written(self, timeout: float = 30) -> bool:
        """Block until every event appended so far is written and published."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._appended
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wakeup.wait(min(remaining, 0.5))
        return True

    def queue_depth(self) -> int:
        """Events appended and not yet taken by the writer (read without the lock)."""
        return len(self._queue)

    def _writer_loop(self) -> None:
        last_write = float("-inf")
        while True:
            with self._lock:
                while not self._queue:
                    self._wakeup.wait(1.0)
                while True:  # gather until the interval is over or a batch is full
                    rest = WRITE_INTERVAL - (time.monotonic() - last_write)
                    if rest <= 0 or len(self._queue) >= MAX_BATCH \
                            or self._queued_lines >= MAX_BATCH_LINES:
                        break
                    self._wakeup.wait(rest)
                last_write = time.monotonic()
                size = lines = 0
                for item in self._queue:
                    size += 1
                    lines += item.lines
                    if size == MAX_BATCH or lines >= MAX_BATCH_LINES:
                        break
                batch = self._queue[:size]
                del self._queue[:size]
            written, fenced = self._write_with_retry(batch)
            self._publish(written)
            self._observe(written)
            for job_id in fenced:
                self._fence(job_id)
            with self._lock:
                self._written += len(batch)
                self._queued_lines -= lines
                for item in batch:
                    if item.event["type"] == "job_finished":
                        self._next_seq.pop(item.job_id, None)
                        self._owners.pop(item.job_id, None)
                self._wakeup.notify_all()

    def _write_with_retry(self, batch: list[_Pending]) -> tuple[list[_Pending], set[int]]:
        """Write the batch's events of the jobs this node still owns; returns those
        written and the ids of the jobs found taken over by another node. A transient
        failure is retried until the database answers; a permanent one isolates the
        refused event (:mod:`tasks.events.write_errors`) and the rest is written as it was."""
        try:
            return self._retry_transient(batch)
        except Exception as error:  # noqa: BLE001 - refused for good: isolate it
            log.error("writing %d events was refused (%s); writing them one by one to "
                      "isolate the refused one", len(batch), describe(error))
        written: list[_Pending] = []
        fenced: set[int] = set()
        for item in batch:
            if item.job_id in fenced:
                continue
            done, lost = self._write_one_storable(item)
            written += done
            fenced |= lost
        return written, fenced

    def _write_one_storable(self, item: _Pending) -> tuple[list[_Pending], set[int]]:
        """One event, then (if refused for good) its storable copy, then its minimal one."""
        original, reason = item, ""
        for shape in (None, storable_copy, minimal_copy):
            if shape is not None:
                item = _Pending(item.job_id, shape(original.event, reason), item.lines)
            try:
                return self._retry_transient([item])
            except Exception as error:  # noqa: BLE001 - refused: try the next shape
                reason = describe(error)
                log.error("job %s: event %s (%s) refused by the database (%s)",
                          item.job_id, item.event["seq"], item.event["type"], reason)
        # Even a plain row is refused: the trouble is the database, not this event.
        # Never drop it: wait for the database as for a transient failure.
        delay = 0.5
        while True:
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            try:
                return self._write([item])
            except Exception as error:  # noqa: BLE001 - keep the log gap-free
                log.error("job %s: event %s still refused (%s); retrying in %.1f s",
                          item.job_id, item.event["seq"], describe(error), delay)

    def _retry_transient(self, batch: list[_Pending]) -> tuple[list[_Pending], set[int]]:
        """Write the batch, retrying transient failures; a permanent one is raised."""
        delay = 0.05
        while True:
            try:
                return self._write(batch)
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("writing %d events failed (%s); retrying in %.2f s",
                            len(batch), describe(error), delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _write(self, batch: list[_Pending]) -> tuple[list[_Pending], set[int]]:
        # One multi-row INSERT for the log; no autoflush, so the derived-state updates
        # are flushed once at commit instead of before every lookup.
        with self.session_factory() as session, session.begin(), session.no_autoflush:
            jobs, fenced = self._owned_jobs(session, {item.job_id for item in batch})
            written = [item for item in batch if item.job_id not in fenced]
            if written:
                session.execute(insert(JobEvent), [{"job_id": item.job_id, **item.event}
                                                   for item in written])
            rows = _batch_rows(session, written, jobs)
            for item in written:
                apply_event(session, item.job_id, item.event, rows)
                if self.on_event is not None:
                    self.on_event(session, item.job_id, item.event)
            rows.release_locks(session)
        return written, fenced

    def _owned_jobs(self, session: Session, job_ids: set[int]
                    ) -> tuple[dict[int, Job], set[int]]:
        """The rows of ``job_ids`` (for the batch to update), and the ids of those
        another node owns now. The rows stay locked until the batch commits, so a
        takeover (an UPDATE of the owner) waits for the batch, or the batch sees the
        new owner: never both writing."""
        query = select(Job).where(Job.id.in_(job_ids))
        if self.node_id is not None:
            query = query.with_for_update()
        jobs = {job.id: job for job in session.scalars(query)}
        fenced = set() if self.node_id is None else {
            job.id for job in jobs.values() if job.node_id not in (None, self.node_id)}
        return jobs, fenced

    def _fence(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._fenced:
                return
            self._fenced.add(job_id)
            self._next_seq.pop(job_id, None)
            self._owners.pop(job_id, None)
        log.warning("job %s is owned by another node now: this node stops writing it",
                    job_id)
        if self.on_fenced is not None:
            self.on_fenced(job_id)

    def _observe(self, batch: list[_Pending]) -> None:
        if self.observe is None or not batch:
            return
        try:
            self.observe([(item.job_id, item.event) for item in batch])
        except Exception:  # noqa: BLE001 - counting must never stop the writer
            log.exception("observing %d written events failed", len(batch))

    def _publish(self, batch: list[_Pending]) -> None:
        by_job: dict[int, list[dict[str, Any]]] = {}
        for item in batch:
            by_job.setdefault(item.job_id, []).append(item.event)
        for job_id, events in by_job.items():
            try:
                self.publisher(job_id, self._owners.get(job_id), events)
            except Exception:  # noqa: BLE001 - clients catch up from the DB
                log.exception("publishing events of job %s failed", job_id)


HOST_STATE_EVENTS = ("host_started", "step_started", "host_finished")


@dataclass
class _BatchRows:
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


def _batch_rows(session: Session, batch: list[_Pending], jobs: dict[int, Job]
                ) -> _BatchRows:
    """The job-host rows and servers a batch's events change, a query each, with its
    ``jobs`` (loaded already)."""
    rows = _BatchRows(jobs=jobs)
    wanted = {(item.job_id, item.event["host"]) for item in batch
              if item.event["host"] is not None and item.event["type"] in HOST_STATE_EVENTS}
    if not wanted:
        return rows
    found = session.scalars(select(JobHost).where(
        JobHost.job_id.in_({job_id for job_id, _ in wanted}),
        JobHost.name.in_({name for _, name in wanted})))
    rows.hosts = {(row.job_id, row.name): row for row in found
                  if (row.job_id, row.name) in wanted}
    finishing = {(item.job_id, item.event["host"]) for item in batch
                 if item.event["type"] == "host_finished"}
    server_ids = {row.server_id for key, row in rows.hosts.items()
                  if key in finishing and row.server_id is not None}
    if server_ids:
        rows.servers = {server.id: server for server in session.scalars(
            select(Server).where(Server.id.in_(server_ids)))}
    return rows


def apply_event(session: Session, job_id: int, event: dict[str, Any],
                rows: _BatchRows) -> None:
    """Update the derived state for one event (inside the writer's transaction), on
    the rows :func:`_batch_rows` loaded for its batch."""
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
        _finish_host(job_id, host, data, rows)


def _finish_host(job_id: int, host: JobHost, data: dict[str, Any], rows: _BatchRows) -> None:
    """A server's ``host_finished``: its row's outcome; its lock goes and its server
    records the job (when it started there)."""
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
