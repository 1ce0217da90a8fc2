"""The servers page, live: the Socket.IO room ``fleet`` receives ``fleet:servers`` rows
whenever a job takes or releases a server and after every reachability round.

The work is in ``tasks/fleet.py``; this module wires it to Socket.IO and the app: the
probe lives in ``app.extensions["patchbay_fleet_probe"]``, starts with the first
``fleet:subscribe`` and stops when nobody in this process watches the fleet.
Settings: ``PATCHBAY_FLEET_PROBE_INTERVAL`` (seconds between rounds, default 30),
``PATCHBAY_FLEET_PROBE_TIMEOUT`` (3) and ``PATCHBAY_FLEET_PROBE_CONCURRENCY`` (50).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from flask_socketio import join_room
from sqlalchemy.orm import Session, sessionmaker

from extensions import db, socketio
from tasks.fleet import ProbeSettings, ReachabilityProbe, fleet_rows, servers_touched

FLEET_ROOM = "fleet"
EXTENSION = "patchbay_fleet_probe"


def subscribe(probe_now: bool) -> list[dict[str, Any]]:
    """Join the current socket to the fleet room, then return every row: joined first,
    so no change can fall between the snapshot and the live updates."""
    join_room(FLEET_ROOM)
    probe(current_app).ensure_running(now=probe_now)
    return fleet_rows(db.session)


def publish_job_changes(sessions: sessionmaker[Session], job_id: int,
                        events: list[dict[str, Any]]) -> None:
    """Called with every published batch of job events (after they are committed)."""
    names = servers_touched(events)
    if not names:
        return
    with sessions() as session:
        rows = fleet_rows(session, names)
    socketio.emit("fleet:servers", {"servers": rows, "job_id": job_id}, to=FLEET_ROOM)


def probe(app: Flask) -> ReachabilityProbe:
    found = app.extensions.get(EXTENSION)
    if found is None:
        config = app.config
        found = ReachabilityProbe(
            sessions=app.extensions["patchbay"].db_sessions,
            publish=_publish_round,
            start_task=socketio.start_background_task,
            wanted=_watched,
            settings=ProbeSettings(
                interval=float(config["FLEET_PROBE_INTERVAL"]),
                timeout=float(config["FLEET_PROBE_TIMEOUT"]),
                concurrency=int(config["FLEET_PROBE_CONCURRENCY"])))
        app.extensions[EXTENSION] = found
    return found


def _publish_round(rows: list[dict[str, Any]], checked_at: str) -> None:
    socketio.emit("fleet:servers", {"servers": rows, "checked_at": checked_at},
                  to=FLEET_ROOM)


def _watched() -> bool:
    """Whether a socket of this process is in the fleet room."""
    try:
        return any(True for _ in socketio.server.manager.get_participants("/", FLEET_ROOM))
    except KeyError:
        return False
