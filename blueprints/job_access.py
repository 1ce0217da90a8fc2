"""Reading jobs for the web layer: snapshots, event pages and replay, shared by the
pages, the JSON API and the Socket.IO handlers."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from extensions import db, socketio
from models import Job
from tasks.errors import PatchbayError
from tasks.event_pages import EventQuery, read_page
from tasks.events import read_events

REPLAY_PAGE = 1000


def require_job(job_id: int) -> None:
    """``not_found`` unless the job exists (a cheap check for the paged endpoints)."""
    if db.session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise PatchbayError("not_found", f"no job #{job_id}", "job_id")


def job_snapshot(job_id: int) -> dict[str, Any]:
    """The job's current state as a dict; ``not_found`` if there is no such job."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
    return job.summary()


def replay_events(app: Flask, sid: str, job_id: int, after_seq: int,
                  replay_lines: int | None = None) -> None:
    """Send one client every event after ``after_seq``, page by page, from the database;
    with ``replay_lines``, output beyond that many lines per server as stubs."""
    sent: dict[str | None, int] = {}
    with app.app_context():
        while True:
            if replay_lines is None:
                events = read_events(db.session, job_id, after_seq, REPLAY_PAGE)
            else:
                events = read_page(db.session, EventQuery(job_id, after_seq, limit=REPLAY_PAGE),
                                   replay_lines, sent)
            db.session.remove()
            if not events:
                return
            socketio.emit("job:events", {"job_id": job_id, "events": events,
                                         "replay": True}, to=sid)
            after_seq = events[-1]["seq"]
            if len(events) < REPLAY_PAGE:
                return
