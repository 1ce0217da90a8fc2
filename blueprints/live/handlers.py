"""Socket.IO handlers: thin and uniform.

Each handler validates its payload with one schema, calls the command service
(``services/commands.py``, shared with the JSON API) and returns an ack.
:func:`acknowledged` is the one place that turns exceptions into error acks:
``{"ok": false, "error": {"code", "message", "field"}}``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from flask_login import current_user
from flask_socketio import SocketIO, join_room, leave_room
from flask_wtf.csrf import validate_csrf
from pydantic import BaseModel
from socketio.exceptions import ConnectionRefusedError as SocketRefused
from wtforms import ValidationError

from blueprints.live import fleet as fleet_live
from blueprints.live.handshakes import current_eio_sid
from blueprints.live.job_access import job_snapshot, replays, subscribe_replay
from blueprints.live.limits import check_socket_limit
from blueprints.live.rooms import job_room, login_room, token_room, user_room
from blueprints.live.socket_control import live_sockets
from blueprints.live.sweeper import Credential
from extensions import socketio
from services.auth.auth_tokens import log_socket_in
from services.auth.login_state import current_login_session_id
from services.auth.permissions import check_socket_event
from services.auth.socket_tokens import socket_tokens
from services.commands import Caller, Commands, error_body, internal_error, parse
from services.console import console_services
from services.schemas.payloads import AdhocCommand, FleetSubscribe, JobRef, StartJob, Subscribe
from tasks.errors import PatchbayError
from tasks.meters import SOCKET_CONNECTIONS

log = logging.getLogger(__name__)
SLOW_HANDLER = 1.0  # seconds


def acknowledged(schema: type[BaseModel]) -> Callable[..., Any]:
    """Check the role, parse the payload with ``schema``; turn any failure into an
    error ack (shaped by the command service, as the JSON API's errors are)."""

    def decorate(handler: Callable[[Any], dict[str, Any]]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def wrapper(payload: Any = None, *extra: Any) -> dict[str, Any]:
            started = time.monotonic()
            try:
                check_socket_event(request.event["message"])
                return {"ok": True, **handler(parse(schema, payload))}
            except PatchbayError as exc:
                return error_body(exc)
            except Exception:  # noqa: BLE001 - one bad request must not break the socket
                log.exception("socket handler %s failed", handler.__name__)
                return error_body(internal_error())
            finally:
                _note_if_slow(request.event["message"], time.monotonic() - started)

        return wrapper

    return decorate


def _note_if_slow(event: str, seconds: float) -> None:
    """An ack that keeps its client waiting is worth a line in the log: it names the
    event, so a slow answer under load can be traced to its cause."""
    if seconds >= SLOW_HANDLER:
        log.warning("socket event %s took %.1f s to answer", event, seconds)


def _commands() -> Commands:
    return console_services().commands


def _caller() -> Caller:
    return Caller(current_user.id, "socket")


def on_connect(auth: Any = None) -> bool:
    """Anonymous sockets are refused; a user's sockets share the room ``user:<id>``.
    A client without a browser session may log in with ``auth: {"token": ...}``.
    A browser session must also send its page's CSRF token (``auth: {"csrf_token"}``):
    a foreign page can make the browser send the cookie, but cannot read the token.
    A refused socket's Engine.IO session is closed once the refusal is sent."""
    eio_sid = current_eio_sid(socketio.server)
    try:
        _accept(auth)
    except SocketRefused:
        live_sockets().handshakes.refused(eio_sid)
        raise
    live_sockets().handshakes.accepted(eio_sid)
    return True


def _accept(auth: Any) -> None:
    token = None
    if current_user.is_authenticated:
        _check_handshake_token(auth)
        session_id = current_login_session_id()
        credential = Credential("login", session_id)
        join_room(login_room(session_id))
    else:
        token = log_socket_in(auth)  # raises ConnectionRefusedError
        credential = Credential("token", token.id)
        join_room(token_room(token.id))
    check_socket_limit(current_user.id)  # raises ConnectionRefusedError
    join_room(user_room(current_user.id))
    if token is not None:  # kept only once accepted: a refused socket never disconnects
        socket_tokens(current_app).add(request.sid, token)
    live_sockets().sweeper.add(request.sid, credential)
    SOCKET_CONNECTIONS.inc()


# python-socketio's disconnect reasons, in the words of the log line
DROP_REASONS = {
    "client disconnect": "closed by the client",
    "server disconnect": "closed by the console (session ended, logout or a message "
                         "queue drop)",
    "ping timeout": "ping timeout (the client stopped answering)",
    "transport close": "transport closed (the connection went away)",
    "transport error": "transport error (a failed request, or a message over "
                       "PATCHBAY_MAX_SOCKET_PAYLOAD)",
}


def on_disconnect(reason: Any = None) -> None:
    """Only accepted sockets get here (a refused connect never does). Every socket that
    goes is logged with why: a drop that loses a watcher can be traced to its cause."""
    log.info("socket %s disconnected: %s", request.sid, DROP_REASONS.get(reason, reason))
    live_sockets().sweeper.discard(request.sid)
    socket_tokens(current_app).discard(request.sid)
    replays(current_app).stop(request.sid)
    SOCKET_CONNECTIONS.dec()


def _join_job(job_id: int) -> None:
    """Put the starting socket in the job's room before the job can publish anything."""
    join_room(job_room(job_id))


@acknowledged(StartJob)
def start_job(data: StartJob) -> dict[str, Any]:
    return {"job_id": _commands().start(data, _caller(), on_recorded=_join_job)}


@acknowledged(JobRef)
def rerun_job(data: JobRef) -> dict[str, Any]:
    """Start a new job on the servers of ``job_id`` that did not succeed."""
    return {"job_id": _commands().rerun(data.job_id, _caller(), on_recorded=_join_job)}


@acknowledged(StartJob)
def plan_job(data: StartJob) -> dict[str, Any]:
    return {"plan": _commands().plan(data)}


@acknowledged(Subscribe)
def subscribe(data: Subscribe) -> dict[str, Any]:
    """Join the job's room first, then replay from the database: no event can fall
    between the replay and the live stream (duplicates are dropped by the client)."""
    snapshot = job_snapshot(data.job_id)
    join_room(job_room(data.job_id))
    subscribe_replay(current_app._get_current_object(), request.sid, data.job_id,
                     data.after_seq, data.replay_lines)  # one replay per socket and job
    return {"job": snapshot}


@acknowledged(AdhocCommand)
def adhoc_job(data: AdhocCommand) -> dict[str, Any]:
    """Run one shell command, as typed, on the chosen servers: a job of kind "adhoc"."""
    return {"job_id": _commands().start(data, _caller(), on_recorded=_join_job)}


@acknowledged(FleetSubscribe)
def fleet_subscribe(data: FleetSubscribe) -> dict[str, Any]:
    return {"servers": fleet_live.subscribe(data.probe)}


@acknowledged(JobRef)
def unsubscribe(data: JobRef) -> dict[str, Any]:
    leave_room(job_room(data.job_id))
    replays(current_app).stop(request.sid, data.job_id)
    return {}


@acknowledged(JobRef)
def cancel_job(data: JobRef) -> dict[str, Any]:
    return _commands().cancel(data.job_id, _caller())


@acknowledged(JobRef)
def promote_job(data: JobRef) -> dict[str, Any]:
    return _commands().promote(data.job_id, _caller())


@acknowledged(JobRef)
def abort_job(data: JobRef) -> dict[str, Any]:
    return _commands().abort(data.job_id, _caller())


def _check_handshake_token(auth: Any) -> None:
    """Refuse a cookie-session socket whose handshake lacks this session's CSRF token
    (cross-site websocket hijacking), whatever ``PATCHBAY_CORS_ALLOWED_ORIGINS`` allows."""
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    token = auth.get("csrf_token") if isinstance(auth, dict) else None
    try:
        validate_csrf(token if isinstance(token, str) else None)
    except ValidationError:
        raise SocketRefused(
            "forbidden: the connection did not carry this session's CSRF token "
            "(auth: {\"csrf_token\": ...} from the page's csrf-token meta tag)") from None


def register(sio: SocketIO) -> None:
    """Bind the handlers to the Socket.IO server (called by ``create_app``)."""
    sio.on_event("connect", on_connect)
    sio.on_event("disconnect", on_disconnect)
    sio.on_event("job:start", start_job)
    sio.on_event("job:plan", plan_job)
    sio.on_event("job:subscribe", subscribe)
    sio.on_event("job:unsubscribe", unsubscribe)
    sio.on_event("job:cancel", cancel_job)
    sio.on_event("job:promote", promote_job)
    sio.on_event("job:abort", abort_job)
    sio.on_event("job:rerun", rerun_job)
    sio.on_event("job:adhoc", adhoc_job)
    sio.on_event("fleet:subscribe", fleet_subscribe)
