"""The servers page, live: the Socket.IO room ``fleet`` receives ``fleet:servers`` rows
whenever a job takes or releases a server and after every reachability round.

The work is in ``services/fleet.py``; this module wires it to Socket.IO and the app: the
probe (``ConsoleServices.fleet_probe``) is made and started by the first
``fleet:subscribe`` and stops when nobody in this process watches the fleet.
Settings: ``PATCHBAY_FLEET_PROBE_INTERVAL`` (seconds between rounds, default 30),
``PATCHBAY_FLEET_PROBE_TIMEOUT`` (3) and ``PATCHBAY_FLEET_PROBE_CONCURRENCY`` (50).
A user may ask for a round at once (``probe: true``) ``PATCHBAY_FLEET_PROBE_RATE_LIMIT``
times (default 6 per minute), counted in the rate limiter's storage (one count across
nodes when that is Redis); beyond it the request is refused with ``rate_limited``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app
from flask_login import current_user
from flask_socketio import join_room
from limits import parse
from socketio import PubSubManager
from sqlalchemy.orm import Session, sessionmaker

from blueprints.live.rooms import FLEET_ROOM
from extensions import db, limiter, socketio
from services.builds import annotate
from services.console import console_services
from services.fleet import ProbeSettings, ReachabilityProbe, fleet_rows, servers_touched
from tasks.errors import PatchbayError

log = logging.getLogger(__name__)




def subscribe(probe_now: bool) -> list[dict[str, Any]]:
    """Join the current socket to the fleet room, then return every row: joined first,
    so no change can fall between the snapshot and the live updates. ``probe_now``
    beyond the user's rate limit is refused (``rate_limited``) and changes nothing."""
    if probe_now:
        _count_probe_request(current_user.id)
    join_room(FLEET_ROOM)
    probe(current_app).ensure_running(now=probe_now)
    return annotate(db.session, fleet_rows(db.session))


def _count_probe_request(user_id: int) -> None:
    rate = current_app.config["FLEET_PROBE_RATE_LIMIT"]
    try:
        allowed = limiter.limiter.hit(parse(rate), "fleet-probe", str(user_id))
    except Exception:  # noqa: BLE001 - storage down: a probe round is cheap, let it be
        log.warning("the rate limiter's storage failed; fleet probe not limited",
                    exc_info=True)
        return
    if not allowed:
        raise PatchbayError(
            "rate_limited", f"reachability checks asked for too often (at most {rate} "
            "per user, PATCHBAY_FLEET_PROBE_RATE_LIMIT); subscribe with probe false: "
            "a round runs every PATCHBAY_FLEET_PROBE_INTERVAL seconds anyway", "probe")


def publish_job_changes(sessions: sessionmaker[Session], job_id: int,
                        events: list[dict[str, Any]]) -> None:
    """Called with every published batch of job events (after they are committed).
    Skipped when nobody can be watching: one process without a message queue, and no
    socket of it in the fleet room (the rows cost queries per batch, a tenth of a
    1,000-server fan-out's CPU, for a page no one had open)."""
    names = servers_touched(events)
    if not names or not _watched_anywhere():
        return
    with sessions() as session:
        rows = annotate(session, fleet_rows(session, names))
    socketio.emit("fleet:servers", {"servers": rows, "job_id": job_id}, to=FLEET_ROOM)


def probe(app: Flask) -> ReachabilityProbe:
    services = console_services(app)
    found = services.fleet_probe
    if found is None:
        config = app.config
        found = ReachabilityProbe(
            sessions=services.engine.db_sessions,
            publish=_publish_round,
            start_task=socketio.start_background_task,
            wanted=_watched,
            settings=ProbeSettings(
                interval=float(config["FLEET_PROBE_INTERVAL"]),
                timeout=float(config["FLEET_PROBE_TIMEOUT"]),
                concurrency=int(config["FLEET_PROBE_CONCURRENCY"])))
        services.fleet_probe = found
    return found


def _publish_round(rows: list[dict[str, Any]], checked_at: str) -> None:
    socketio.emit("fleet:servers", {"servers": rows, "checked_at": checked_at},
                  to=FLEET_ROOM)


def _watched_anywhere() -> bool:
    """Whether a servers page may be open: on another node (a message queue carries
    this node's messages to sockets this process cannot see), or on this one."""
    return isinstance(socketio.server.manager, PubSubManager) or _watched()


def _watched() -> bool:
    """Whether a socket of this process is in the fleet room."""
    try:
        return any(True for _ in socketio.server.manager.get_participants("/", FLEET_ROOM))
    except KeyError:
        return False
