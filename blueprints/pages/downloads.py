"""Downloading a job's log as text: the whole job, or one server (``?host=NAME``).

The file is streamed: events are read from the database a page at a time (each page
in its own short session) and written out as they are read, so neither the server nor
the browser ever holds a whole log. A running job's log is cut at the seq it had when
the download started. Output lines read ``[<server> <stream>] <line>``; the other
lines say what happened (``[<server>] step deploy: ok …``, ``[job] finished: …``), in
the words of the event catalogue (:func:`tasks.events.catalogue.describe`).
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
from services.console import console_services
from tasks.events.catalogue import describe
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
    events = iter_events(console_services().engine.db_sessions, job_id, host,
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
        chunk.extend(describe(event))
        if len(chunk) >= FLUSH_LINES:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk)
