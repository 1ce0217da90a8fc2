"""Reading jobs for the web layer: snapshots, event pages and replay, shared by the
pages, the JSON API and the Socket.IO handlers."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import select

from extensions import db, socketio
from models import Job
from services.history import succeeded_since
from services.job_titles import titled
from tasks.errors import PatchbayError
from tasks.events.event_query import EventQuery
from tasks.events.pages import read_page

REPLAY_PAGE = 1000
EXTENSION = "patchbay_replays"


def require_job(job_id: int) -> None:
    """``not_found`` unless the job exists (a cheap check for the paged endpoints)."""
    if db.session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise PatchbayError("not_found", f"no job #{job_id}", "job_id")


def job_snapshot(job_id: int) -> dict[str, Any]:
    """The job's current state as a dict, with ``succeeded_since`` (its servers a later
    job has fixed since: ``{server: job id}``); ``not_found`` if there is no such job."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
    return {**titled(job.summary()), "succeeded_since": succeeded_since(db.session, job_id)}


@dataclass
class _Wanted:
    """What the latest ``job:subscribe`` of one socket for one job asked to replay."""

    after_seq: int
    replay_lines: int | None
    generation: int = 0


class Replays:
    """The replays this process is sending: at most one per socket and job.

    A ``job:subscribe`` while that socket's replay of the job is under way does not start
    another one: the running replay drops what it was sending and starts over from the
    new request at its next page. Disconnecting (or ``job:unsubscribe``) stops it. One
    socket replays at most ``per_socket`` jobs at once (``PATCHBAY_MAX_REPLAYS_PER_SOCKET``):
    a subscribe to one more stops that socket's oldest replay. This is about this
    process's own sockets, so it is kept in this process."""

    def __init__(self, per_socket: int) -> None:
        if per_socket < 1:
            raise RuntimeError("PATCHBAY_MAX_REPLAYS_PER_SOCKET must be 1 or more")
        self.per_socket = per_socket
        self._lock = threading.Lock()
        self._wanted: dict[tuple[str, int], _Wanted] = {}  # oldest request first

    def request(self, sid: str, job_id: int, after_seq: int,
                replay_lines: int | None) -> bool:
        """Note a subscribe; True when no replay runs for it yet (start one)."""
        with self._lock:
            wanted = self._wanted.get((sid, job_id))
            if wanted is None:
                own = [key for key in self._wanted if key[0] == sid]
                for key in own[:max(0, len(own) - self.per_socket + 1)]:
                    del self._wanted[key]  # its task sees it gone at its next page
                self._wanted[(sid, job_id)] = _Wanted(after_seq, replay_lines)
                return True
            wanted.after_seq, wanted.replay_lines = after_seq, replay_lines
            wanted.generation += 1
            return False

    def current(self, sid: str, job_id: int) -> _Wanted | None:
        """A copy of the latest request, or None once the replay is to stop."""
        with self._lock:
            wanted = self._wanted.get((sid, job_id))
            return None if wanted is None else _Wanted(wanted.after_seq, wanted.replay_lines,
                                                      wanted.generation)

    def finish(self, sid: str, job_id: int, generation: int) -> bool:
        """The replay of ``generation`` has sent everything: forget it, unless a newer
        request came meanwhile (then False: go on with that one)."""
        with self._lock:
            wanted = self._wanted.get((sid, job_id))
            if wanted is not None and wanted.generation != generation:
                return False
            self._wanted.pop((sid, job_id), None)
            return True

    def stop(self, sid: str, job_id: int | None = None) -> None:
        """Stop the socket's replay of ``job_id`` (of every job when None)."""
        with self._lock:
            for key in [key for key in self._wanted
                        if key[0] == sid and job_id in (None, key[1])]:
                del self._wanted[key]

    def running(self) -> int:
        with self._lock:
            return len(self._wanted)


def replays(app: Flask) -> Replays:
    """This process's :class:`Replays` (made on first use)."""
    replaying = app.extensions.get(EXTENSION)
    if replaying is None:
        replaying = app.extensions[EXTENSION] = Replays(int(app.config["MAX_REPLAYS_PER_SOCKET"]))
    return replaying


def subscribe_replay(app: Flask, sid: str, job_id: int, after_seq: int,
                     replay_lines: int | None) -> None:
    """Replay the job to the socket after ``after_seq``: in a background task, or by
    the one already replaying it to that socket."""
    if replays(app).request(sid, job_id, after_seq, replay_lines):
        socketio.start_background_task(replay_events, app, sid, job_id)


def replay_events(app: Flask, sid: str, job_id: int) -> None:
    """Send one socket every event after the requested seq, page by page (each at most
    ``PATCHBAY_MAX_PAGE_BYTES``), from the database; with ``replay_lines``, output beyond
    that many lines per server as stubs. Starts over when the socket subscribes again,
    stops when it leaves."""
    registry = replays(app)
    try:
        with app.app_context():
            _replay(registry, sid, job_id, int(app.config["MAX_PAGE_BYTES"]))
    except BaseException:
        registry.stop(sid, job_id)  # a later subscribe must start a replay again
        raise


def _replay(registry: Replays, sid: str, job_id: int, max_bytes: int) -> None:
    generation: int | None = None
    after_seq, sent = 0, {}
    while True:
        wanted = registry.current(sid, job_id)
        if wanted is None:
            return
        if wanted.generation != generation:
            generation, after_seq, sent = wanted.generation, wanted.after_seq, {}
        try:
            page = read_page(db.session, EventQuery(job_id, after_seq, limit=REPLAY_PAGE),
                             wanted.replay_lines, sent, max_bytes)
        finally:
            db.session.remove()
        latest = registry.current(sid, job_id)
        if latest is None or latest.generation != generation:
            continue  # asked again (or gone) while reading: this page is stale
        if page.events:
            socketio.emit("job:events", {"job_id": job_id, "events": page.events,
                                         "replay": True}, to=sid)
            after_seq = page.events[-1]["seq"]
        if (not page.more or not page.events) and registry.finish(sid, job_id, generation):
            return
