"""Jobs waiting for a person: the header's "1 rollout waiting for you" on every page,
the dashboard's list at its top, ``GET /api/jobs/waiting`` and the ``jobs:waiting``
broadcast (docs/live-api.md).

:func:`waiting_for` is the one test of whether a job waits for someone: today a job
paused at a manual gate (promote or abort it); an approval or a time window would
answer there too, with its own word.

"For you": a job waits for whoever may act on it. Promote and abort take the operator
role (services/auth/permissions.py), so an operator or an admin sees every waiting job
as waiting for them; a viewer sees the same jobs, said to be waiting for an operator.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Job, JobEvent
from services.auth.permissions import ROLE_RANK

# The job statuses a wait can have (the query's filter; waiting_for decides).
WAITING_STATUSES = ("paused",)
ACTING_ROLE = "operator"  # the role that may promote or abort (job:promote, job:abort)
MAX_LISTED = 20  # jobs described in full; ``count`` counts them all
MAX_NAMES = 12  # server names per batch in a description


def waiting_for(job: Job) -> str | None:
    """What ``job`` waits for a person to do, or ``None``: ``gate`` when it is paused at
    a manual gate (an operator promotes the next batch or aborts)."""
    if job.status == "paused":
        return "gate"
    return None


def may_act(role: str | None) -> bool:
    """Whether a user of ``role`` may act on a waiting job (it waits "for you")."""
    return ROLE_RANK.get(role or "", -1) >= ROLE_RANK[ACTING_ROLE]


def waiting_jobs(session: Session) -> dict[str, Any]:
    """``{count, jobs}``: every job waiting for a person, oldest first, the first
    :data:`MAX_LISTED` described (:func:`describe`)."""
    found = [job for job in session.scalars(
        select(Job).where(Job.status.in_(WAITING_STATUSES)).order_by(Job.id))
        if waiting_for(job) is not None]
    return {"count": len(found),
            "jobs": [describe(session, job) for job in found[:MAX_LISTED]]}


def describe(session: Session, job: Job) -> dict[str, Any]:
    """One waiting job: what it is, what it waits for, since when, and its gate."""
    paused = _event(session, job.id, "job_paused")
    gate = _gate(session, job.id, paused)
    return {
        "job_id": job.id,
        "runbook": job.runbook,
        "kind": job.kind,
        "target_version": job.target_version,
        "created_by": job.created_by.username if job.created_by else None,
        "waiting": waiting_for(job),
        "since": paused.ts if paused is not None else None,
        "gate": gate,
        "words": gate_words(gate),
    }


def batch_name(index: int, count: int) -> str:
    """"canary" or "batch 2", as the job page names batches (rollout-model.js)."""
    return "canary" if index == 0 and count > 1 else f"batch {index + 1}"


def gate_words(gate: dict[str, Any] | None) -> str:
    """What a job waits at, in words: "paused after the canary (1 server); promoting
    starts batch 2 (7 servers)"."""
    if gate is None:
        return "paused at a gate"
    count, done = gate["batches"], gate["batch"]
    after = "the canary" if done == 0 and count > 1 else f"batch {done + 1}"
    words = f"paused after {after} ({_servers(gate['done_count'])})"
    if gate["next_batch"] is not None:
        words += (f"; promoting starts {batch_name(gate['next_batch'], count)} "
                  f"({_servers(gate['next_count'])})")
    return words


def _servers(count: int) -> str:
    return f"{count} server" if count == 1 else f"{count} servers"


def _gate(session: Session, job_id: int, paused: JobEvent | None) -> dict[str, Any] | None:
    """The gate a paused job waits at: the batch done, the batch a promotion starts, how
    many servers each holds (and the first names), and how many an abort would skip."""
    if paused is None:
        return None
    started = _event(session, job_id, "job_started", first=True)
    batches = [list(names) for names in ((started.data or {}).get("batches") or [])] \
        if started is not None else []
    done, next_batch = int(paused.data.get("batch", 0)), paused.data.get("next_batch")
    ahead = batches[done + 1:] if done + 1 <= len(batches) else []
    next_names = batches[next_batch] if next_batch is not None and \
        0 <= next_batch < len(batches) else []
    done_names = batches[done] if done < len(batches) else []
    return {
        "batch": done,
        "next_name": batch_name(next_batch, len(batches)) if next_batch is not None else None,
        "next_batch": next_batch,
        "batches": len(batches),
        "reason": paused.data.get("reason"),
        "done_servers": done_names[:MAX_NAMES],
        "done_count": len(done_names),
        "next_servers": next_names[:MAX_NAMES],
        "next_count": len(next_names),
        "not_started": sum(len(names) for names in ahead),
    }


def _event(session: Session, job_id: int, kind: str, first: bool = False) -> JobEvent | None:
    """The job's last event of ``kind`` (its first with ``first``: walked from that end
    of the log, where it is, never through a long job's output)."""
    order = JobEvent.seq.asc() if first else JobEvent.seq.desc()
    return session.scalar(select(JobEvent).where(JobEvent.job_id == job_id,
                                                 JobEvent.type == kind)
                          .order_by(order).limit(1))
