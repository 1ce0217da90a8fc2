"""Fencing: one writer per job across nodes.

Only a job's owner node writes its events (so ``seq`` needs no lock across nodes). Each
batch re-reads the owner of its jobs under a row lock; events of a job that another node
has taken over meanwhile are dropped, never written, and from then on appending to that
job raises :class:`JobFenced`, which stops this node's run of it without touching the
servers (the new owner has re-attached to them).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Job


class JobFenced(BaseException):  # noqa: N818 - not an error: the job moved on
    """This node no longer owns the job (another node took it over): stop running it.

    A ``BaseException``, so the "fail visibly" handlers of a run (``except Exception``)
    let it through instead of trying to record a failure they may not write."""


def owned_jobs(session: Session, job_ids: set[int], node_id: str | None
               ) -> tuple[dict[int, Job], set[int]]:
    """The rows of ``job_ids`` (for the batch to update), and the ids of those
    another node owns now. The rows stay locked until the batch commits, so a
    takeover (an UPDATE of the owner) waits for the batch, or the batch sees the
    new owner: never both writing. ``node_id`` None: one process, nothing to check."""
    query = select(Job).where(Job.id.in_(job_ids))
    if node_id is not None:
        query = query.with_for_update()
    jobs = {job.id: job for job in session.scalars(query)}
    fenced = set() if node_id is None else {
        job.id for job in jobs.values() if job.node_id not in (None, node_id)}
    return jobs, fenced
