"""Where a job's written events go: all of them to ``job:<id>`` (``job:events``), a
light ``job:progress`` to the owner's ``user:<id>`` (services/progress.py), the servers
they touched to the servers page (``fleet:servers``), and, when a job starts or stops
waiting for a person (a gate's events, its end), the jobs waiting to every socket
(``jobs:waiting``, services/waiting.py: every page's header)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from blueprints.live import fleet as fleet_live
from blueprints.live.rooms import job_room, user_room
from extensions import socketio
from services.progress import ProgressDigest
from services.waiting import waiting_jobs
from tasks.events.catalogue import GATE_EVENTS

# The events after which the jobs waiting for a person may have changed.
WAITING_CHANGES = frozenset((*GATE_EVENTS, "job_finished"))


class JobPublisher:
    """The event log's publisher (called after each batch is committed)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.progress = ProgressDigest()

    def __call__(self, job_id: int, owner_id: int | None,
                 events: list[dict[str, Any]]) -> None:
        socketio.emit("job:events", {"job_id": job_id, "events": events}, to=job_room(job_id))
        if owner_id is not None:
            progress = self.progress.digest(job_id, events)
            if progress.message is not None:
                socketio.emit("job:progress", progress.message, to=user_room(owner_id))
            if progress.flush_in is not None:
                socketio.start_background_task(self._flush_later, job_id, owner_id,
                                               progress.flush_in)
        fleet_live.publish_job_changes(self.sessions, job_id, events)  # servers page rows
        if any(event["type"] in WAITING_CHANGES for event in events):
            self.publish_waiting()

    def publish_waiting(self) -> None:
        """Every job waiting for a person, to every socket (each page's header)."""
        with self.sessions() as session:
            waiting = waiting_jobs(session)
        socketio.emit("jobs:waiting", waiting)

    def _flush_later(self, job_id: int, owner_id: int, delay: float | None) -> None:
        """Send a held-back latest line once its interval is over."""
        while delay is not None:
            socketio.sleep(delay)
            progress = self.progress.flush(job_id)
            if progress.message is not None:
                socketio.emit("job:progress", progress.message, to=user_room(owner_id))
            delay = progress.flush_in
