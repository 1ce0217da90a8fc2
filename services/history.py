"""Job history: finding jobs by status, runbook, kind, user and date, one page at a
time with per-status server counts (how long each step usually takes, for the job
page's time left, is services/step_durations.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from models import Job, JobEvent, JobHost, User
from services.job_titles import ROLLBACK, build_moves, job_title, moves_words, titled
from tasks.events.catalogue import GATE_DECISIONS


@dataclass(frozen=True)
class JobFilter:
    """What the history is narrowed to; ``None`` means any. Times are naive UTC;
    ``until`` is exclusive."""

    status: str | None = None
    runbook: str | None = None
    kind: str | None = None
    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, statement: Select[Any]) -> Select[Any]:
        if self.status:
            statement = statement.where(Job.status == self.status)
        if self.runbook:
            statement = statement.where(Job.runbook == self.runbook)
        if self.kind:
            statement = statement.where(Job.kind == self.kind)
        if self.user:
            statement = statement.where(Job.created_by_id.in_(
                select(User.id).where(User.username == self.user)))
        if self.since:
            statement = statement.where(Job.created_at >= self.since)
        if self.until:
            statement = statement.where(Job.created_at < self.until)
        return statement


def jobs_query(job_filter: JobFilter) -> Select[tuple[Job]]:
    """The matching jobs, newest first (page it with ``offset``/``limit``)."""
    return job_filter.apply(select(Job)).order_by(Job.id.desc())


def jobs_page(session: Session, job_filter: JobFilter, offset: int, limit: int,
              before_id: int | None, max_bytes: int) -> tuple[list[dict[str, Any]], bool]:
    """Job summaries (``Job.summary``), newest first, below ``before_id`` if given: at
    most ``limit`` and about ``max_bytes`` of JSON (at least one), and whether more
    follow. A job's summary lists its servers, so big jobs fill the budget sooner."""
    statement = jobs_query(job_filter)
    if before_id is not None:
        statement = statement.where(Job.id < before_id)
    found: list[dict[str, Any]] = []
    size = 0
    for job in session.scalars(statement.offset(offset).limit(limit + 1)):
        if len(found) == limit:
            return found, True
        summary = titled(job.summary())
        cost = len(json.dumps(summary))
        if found and size + cost > max_bytes:
            return found, True
        found.append(summary)
        size += cost
    return found, False


def count_jobs(session: Session, job_filter: JobFilter) -> int:
    return session.scalar(job_filter.apply(select(func.count(Job.id)))) or 0


def history_page(session: Session, job_filter: JobFilter, page: int, per_page: int
                 ) -> tuple[list[dict[str, Any]], bool]:
    """One page of history rows (newest first) and whether an older page exists.

    A row is the job without its per-server list, plus ``duration`` (seconds, for
    finished jobs), ``servers`` (how many), ``counts`` (servers per status), ``batches``
    (servers per status of each batch) and ``gates`` (its pauses, promotions and aborts
    at a manual gate, with who: ``{"kind", "by", "batch"}``), ``title`` and, for a
    rollback, ``builds`` (each server's from → to, grouped) and ``builds_words``
    (services/job_titles.py): history of thousand-server jobs stays one grouped query
    per page, and one over the job-level events."""
    jobs = session.scalars(jobs_query(job_filter).offset((page - 1) * per_page)
                           .limit(per_page + 1)).all()
    has_next = len(jobs) > per_page
    jobs = jobs[:per_page]
    counts: dict[int, dict[str, int]] = {job.id: {} for job in jobs}
    batches: dict[int, list[dict[str, int]]] = {job.id: [] for job in jobs}
    gates = _gate_decisions(session, [job.id for job in jobs])
    moves = _rollback_moves(session, [job.id for job in jobs if job.kind == ROLLBACK])
    if jobs:
        grouped = session.execute(
            select(JobHost.job_id, JobHost.batch, JobHost.status, func.count())
            .where(JobHost.job_id.in_(list(counts)))
            .group_by(JobHost.job_id, JobHost.batch, JobHost.status))
        for job_id, batch, status, number in grouped:
            counts[job_id][status] = counts[job_id].get(status, 0) + number
            per_batch = batches[job_id]
            per_batch.extend({} for _ in range(len(per_batch), (batch or 0) + 1))
            per_batch[batch or 0][status] = number
    rows = []
    for job in jobs:
        duration = (job.finished_at - job.created_at).total_seconds() \
            if job.finished_at else None
        rows.append({
            "id": job.id, "kind": job.kind, "runbook": job.runbook, "params": job.params,
            "status": job.status,
            "created_by": job.created_by.username if job.created_by else None,
            "created_at": job.created_at.isoformat() + "Z",
            "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
            "duration": round(duration, 1) if duration is not None else None,
            "servers": sum(counts[job.id].values()), "counts": counts[job.id],
            "batches": batches[job.id], "gates": gates[job.id],
            "rerun_of": job.rerun_of_id, "title": job_title(job.kind, job.runbook),
            "builds": moves.get(job.id, []),
            "builds_words": moves_words(moves[job.id]) if moves.get(job.id) else "",
        })
    return rows, has_next


def _rollback_moves(session: Session, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each rollback job's servers from → to, grouped (:func:`build_moves`)."""
    hosts: dict[int, list[tuple[str, str | None, str | None]]] = {}
    if job_ids:
        for job_id, name, before, after in session.execute(
                select(JobHost.job_id, JobHost.name, JobHost.from_version,
                       JobHost.to_version)
                .where(JobHost.job_id.in_(job_ids)).order_by(JobHost.position)):
            hosts.setdefault(job_id, []).append((name, before, after))
    return {job_id: build_moves(found) for job_id, found in hosts.items()}


def _gate_decisions(session: Session, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each job's pauses, promotions and aborts at a manual gate, oldest first, as
    ``{"kind", "by", "batch"}`` (kind: the catalogue's :data:`GATE_DECISIONS`)."""
    gates: dict[int, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
    if not job_ids:
        return gates
    # Job-level events only (host IS NULL: the (job_id, host, seq) index).
    for job_id, kind, data in session.execute(
            select(JobEvent.job_id, JobEvent.type, JobEvent.data)
            .where(JobEvent.job_id.in_(job_ids), JobEvent.host.is_(None),
                   JobEvent.type.in_(list(GATE_DECISIONS)))
            .order_by(JobEvent.job_id, JobEvent.seq)):
        gates[job_id].append({"kind": GATE_DECISIONS[kind], "by": (data or {}).get("by"),
                              "batch": (data or {}).get("batch")})
    return gates


def succeeded_since(session: Session, job_id: int) -> dict[str, int]:
    """The servers job ``job_id`` did not succeed on that a later job of the same
    runbook, kind and parameters (a re-run, or the same job started again) has fixed
    since: ``{server: that job's id}``. A server counts as fixed only when the newest
    finished such job that ran it succeeded there (it may have failed again since)."""
    job = session.get(Job, job_id)
    if job is None:
        return {}
    open_names = {host.name for host in job.hosts if host.status != "succeeded"}
    if not open_names:
        return {}
    latest: dict[str, tuple[int, str]] = {}
    for later_id, params, name, status in session.execute(
            select(Job.id, Job.params, JobHost.name, JobHost.status)
            .join(JobHost, JobHost.job_id == Job.id)
            .where(Job.id > job.id, Job.kind == job.kind, Job.runbook == job.runbook,
                   Job.finished_at.is_not(None), JobHost.name.in_(open_names))
            .order_by(Job.id)):
        if params == job.params:
            latest[name] = (later_id, status)  # newer jobs overwrite older ones
    return {name: later_id for name, (later_id, status) in sorted(latest.items())
            if status == "succeeded"}


def since_words(fixed: dict[str, int]) -> str:
    """``{"gs-03": 5}`` in words: "gs-03 succeeded since in job #5" (by job, in order)."""
    by_job: dict[int, list[str]] = {}
    for name, later_id in fixed.items():
        by_job.setdefault(later_id, []).append(name)
    return "; ".join(f"{', '.join(names)} succeeded since in job #{later_id}"
                     for later_id, names in sorted(by_job.items()))


def runbook_names(session: Session) -> list[str]:
    """Runbooks that appear in the history (including ones since removed)."""
    return list(session.scalars(select(Job.runbook).where(Job.kind == "runbook")
                                .distinct().order_by(Job.runbook)))
