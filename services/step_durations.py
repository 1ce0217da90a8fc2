"""How long each step of a runbook took in earlier jobs, per server (for the job page's
time left): the median ``duration`` of the step's ``step_finished`` events (status ok,
the main steps) in the last :data:`SAMPLE_JOBS` finished jobs of the runbook.

The query is bounded twice: the jobs (the last :data:`SAMPLE_JOBS`, through the
``(runbook, id)`` index of jobs) and the events read (at most :data:`MAX_EVENTS`
``step_finished`` events, newest jobs first, through the job_events primary key)."""

from __future__ import annotations

from collections.abc import Iterable
from statistics import median
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import LIVE_JOB_STATUSES, Job, JobEvent

SAMPLE_JOBS = 20
MAX_EVENTS = 20_000


def usual_step_durations(session: Session, runbook: str, kind: str, before_job_id: int,
                         hosts: Iterable[str] = ()) -> dict[str, Any]:
    """Each step's median duration in earlier finished jobs of ``runbook`` (before
    ``before_job_id``), over all servers and per server of ``hosts``::

        {"jobs": 3, "steps": {"download": {"seconds": 10.2, "runs": 24,
                                           "hosts": {"gs-01": 9.8}}}}

    ``runs`` counts the server runs of the step the median is taken over; a step no
    earlier job finished is absent. Ad-hoc commands differ run to run: no history."""
    if kind != "runbook":
        return {"jobs": 0, "steps": {}}
    recent = list(session.scalars(
        select(Job.id).where(Job.runbook == runbook, Job.kind == kind, Job.id < before_job_id,
                             Job.status.not_in(LIVE_JOB_STATUSES))
        .order_by(Job.id.desc()).limit(SAMPLE_JOBS)))
    if not recent:
        return {"jobs": 0, "steps": {}}
    rows = session.execute(
        select(JobEvent.job_id, JobEvent.host, JobEvent.data)
        .where(JobEvent.job_id.in_(recent), JobEvent.type == "step_finished")
        .order_by(JobEvent.job_id.desc(), JobEvent.seq).limit(MAX_EVENTS))
    return {"jobs": len(recent), "steps": _medians(rows, set(hosts))}


def _medians(rows: Iterable[Any], hosts: set[str]) -> dict[str, dict[str, Any]]:
    """``rows`` of (job_id, host, data) folded into each step's medians."""
    overall: dict[str, list[float]] = {}
    per_host: dict[str, dict[str, list[float]]] = {}
    for _job_id, host, data in rows:
        data = data or {}
        duration = data.get("duration")
        if data.get("phase", "steps") != "steps" or data.get("status") != "ok" \
                or not isinstance(duration, (int, float)) or isinstance(duration, bool):
            continue
        step = str(data.get("step") or "")
        overall.setdefault(step, []).append(float(duration))
        if host in hosts:
            per_host.setdefault(step, {}).setdefault(host, []).append(float(duration))
    return {step: {"seconds": round(median(seconds), 3), "runs": len(seconds),
                   "hosts": {host: round(median(values), 3)
                             for host, values in per_host.get(step, {}).items()}}
            for step, seconds in overall.items()}
