"""Downloading a job's log as text: the whole job, or one server (``?host=NAME``).

The file is streamed: events are read from the database a page at a time (each page
in its own short session) and written out as they are read, so neither the server nor
the browser ever holds a whole log. A running job's log is cut at the seq it had when
the download started. Output lines read ``[<server> <stream>] <line>``; the other
lines say what happened (``[<server>] step deploy: ok …``, ``[job] finished: …``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, abort, current_app, request
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from extensions import db, limiter
from models import Job, JobHost
from tasks.events.pages import iter_events

bp = Blueprint("downloads", __name__)
FLUSH_LINES = 2000  # lines per chunk written to the client


def _user_key() -> str:
    return f"user:{current_user.id}"


@bp.get("/jobs/<int:job_id>/log.txt")
@login_required  # before the limit: its key is the user
@limiter.limit(lambda: current_app.config["LOG_DOWNLOAD_RATE_LIMIT"], key_func=_user_key,
               scope="log-download")
def job_log(job_id: int) -> Response:
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404)
    host = request.args.get("host") or None
    if host is not None and db.session.scalar(
            select(JobHost.id).where(JobHost.job_id == job_id, JobHost.name == host)) is None:
        abort(404)
    title = f"ad-hoc command {job.params.get('command', '')!r}" if job.kind == "adhoc" \
        else job.runbook + "".join(f" {k}={v}" for k, v in (job.params or {}).items())
    header = (f"# Patchbay job #{job.id}: {title}; started by "
              f"{job.created_by.username if job.created_by else 'nobody'} at "
              f"{job.created_at.isoformat()}Z" + (f"; server {host}" if host else "") + "\n")
    events = iter_events(current_app.extensions["patchbay"].db_sessions, job_id, host,
                         up_to=job.last_seq,
                         max_bytes=int(current_app.config["MAX_PAGE_BYTES"]))
    name = f"job-{job_id}" + (f"-{re.sub(r'[^A-Za-z0-9_.-]', '_', host)}" if host else "")
    return Response(_text(header, events), mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{name}.log"',
                             "Cache-Control": "no-store"})


@bp.errorhandler(429)
def too_many_downloads(_error: Exception) -> tuple[str, int, dict[str, str]]:
    """Flask-Limiter's 429 for this blueprint's routes, said plainly."""
    rate = current_app.config["LOG_DOWNLOAD_RATE_LIMIT"]
    return (f"Too many log downloads: at most {rate} per user "
            "(PATCHBAY_LOG_DOWNLOAD_RATE_LIMIT). Wait a minute and try again.\n",
            429, {"Content-Type": "text/plain; charset=utf-8"})


def _text(header: str, events: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield header
    chunk: list[str] = []
    for event in events:
        chunk.extend(log_lines(event))
        if len(chunk) >= FLUSH_LINES:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk)


def log_lines(event: dict[str, Any]) -> list[str]:
    """One event as lines of the text log (each ending in a newline)."""
    kind, data = event["type"], event["data"]
    where = f"[{event['host']}" if event["host"] else "[job"
    if kind == "output":
        prefix = f"{where} {data.get('stream', 'stdout')}] "
        return [prefix + line + "\n" for line in data.get("lines") or []]
    if kind == "job_started":
        text = f"started: {data.get('runbook')} on {len(data.get('servers') or [])} server(s)"
    elif kind == "batch_started":
        text = f"batch {data.get('batch', 0) + 1}: {', '.join(data.get('servers') or [])}"
    elif kind == "host_started":
        text = f"connecting to {data.get('address')}"
    elif kind == "step_started":
        text = f"step {data.get('step')} started" + (
            " (on failure)" if data.get("phase") == "on_failure" else
            " (soak health check)" if data.get("phase") == "health" else
            " (no step reported the build)" if data.get("phase") == "probe" else "")
        if isinstance(data.get("wait"), dict):
            wait = data["wait"]
            text += f": waiting for {wait.get('until')} every {wait.get('every')} s, up to " \
                    f"{wait.get('timeout')} s, then {wait.get('on_timeout')}"
    elif kind == "wait_probe":  # one line per probe: its last output line
        output = data.get("output") or []
        text = f"probe {data.get('attempt')} of {data.get('step')}: exit code " \
               f"{data.get('exit_code')}, {'matched' if data.get('matched') else 'no match'}, " \
               f"{data.get('remaining')} s left" + (f": {output[-1]}" if output else "")
    elif kind == "job_paused":
        text = f"paused after batch {(data.get('batch') or 0) + 1}: waiting at the gate " \
               "for an operator to promote or abort"
    elif kind == "job_resumed":
        text = f"promoted by {data.get('by')}: batch {(data.get('batch') or 0) + 1} starts"
    elif kind == "job_aborted":
        text = f"aborted at the gate by {data.get('by')} after batch " \
               f"{(data.get('batch') or 0) + 1}"
    elif kind == "soak_started":
        text = f"soaking batch {(data.get('batch') or 0) + 1} for {data.get('seconds')} s, " \
               "then its health checks again"
    elif kind == "soak_finished" and data.get("passed"):
        text = f"batch {(data.get('batch') or 0) + 1} passed its health checks after the soak"
    elif kind == "soak_finished":
        text = data.get("reason") or f"batch {(data.get('batch') or 0) + 1} failed its " \
            f"health check after the soak ({', '.join(data.get('failed') or [])})"
    elif kind == "step_finished":
        text = f"step {data.get('step')}: {data.get('status')}" + _details(data)
    elif kind in ("host_finished", "job_finished"):
        text = f"finished: {data.get('status')}" + _details(data)
        if data.get("counts"):
            text += " (" + ", ".join(f"{n} {s}" for s, n in data["counts"].items()) + ")"
    elif kind == "host_reconnecting":
        text = f"connection lost ({data.get('reason')}); reconnecting for up to " \
               f"{data.get('timeout')} s"
    elif kind == "host_reconnected":
        text = f"reconnected after {data.get('attempts')} attempt(s)"
    elif kind == "job_recovered":
        text = f"console restarted: resumed on {data.get('node')}"
    elif kind == "events_pruned":
        text = f"events pruned after {data.get('days')} days ({data.get('events')} " \
               "events removed)"
    else:
        text = kind
    return [f"{where}] {text}\n"]


def _details(data: dict[str, Any]) -> str:
    parts = []
    if data.get("exit_code") is not None:
        parts.append(f"exit code {data['exit_code']}")
    if data.get("duration") is not None:
        parts.append(f"{data['duration']} s")
    if data.get("reason"):
        parts.append(str(data["reason"]))
    return ", " + ", ".join(parts) if parts else ""
