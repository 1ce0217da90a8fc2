"""A job's whole log: downloaded as text (the whole job, or one server with
``?host=NAME``), or on one page to print or save (``/jobs/<id>/output``). Both read
every stored event, so both count against the per-user ``LOG_DOWNLOAD_RATE_LIMIT``.

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

from flask import Blueprint, abort, current_app, request, stream_template
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from extensions import db, limiter
from models import Job, JobHost
from services.console import console_services
from services.job_output import clock, job_output, size_words
from tasks.events.catalogue import describe
from tasks.events.pages import iter_events

bp = Blueprint("downloads", __name__)
FLUSH_LINES = 2000  # lines per chunk written to the client
OUTPUT_CHUNK = 64 * 1024  # characters of the output page written to the client at once


def _user_key() -> str:
    return f"user:{current_user.id}"


# One count per user for both ways of reading a whole log (below login_required:
# its key is the user).
LOG_READS = limiter.shared_limit(lambda: current_app.config["LOG_DOWNLOAD_RATE_LIMIT"],
                                 scope="log-download", key_func=_user_key)


@bp.get("/jobs/<int:job_id>/log.txt")
@login_required  # before the limit: its key is the user
@LOG_READS
def job_log(job_id: int) -> Response:
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404, description=f"job #{job_id} does not exist")
    host = request.args.get("host") or None
    if host is not None and db.session.scalar(
            select(JobHost.id).where(JobHost.job_id == job_id, JobHost.name == host)) is None:
        abort(404, description=f"job #{job_id} has no server {host}")
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


@bp.get("/jobs/<int:job_id>/output")
@login_required  # before the limit: its key is the user
@LOG_READS
def job_output_page(job_id: int) -> Response:
    """Every server's whole output on one page, to print or save (docs/live-api.md)."""
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404, description=f"job #{job_id} does not exist")
    output = job_output(console_services().engine.db_sessions, db.session, job,
                        int(current_app.config["PRINT_MAX_BYTES"]),
                        int(current_app.config["MAX_PAGE_BYTES"]))
    # The page streams for as long as the client reads: hold no transaction meanwhile
    # (each page of events is read in a short session of its own).
    db.session.close()
    page = stream_template("jobs/output.html", output=output, clock=clock,
                           size_words=size_words,
                           timestamps=request.args.get("timestamps") == "1")
    return current_app.response_class(_in_chunks(page), mimetype="text/html",
                                      headers={"Cache-Control": "no-store"})


def _in_chunks(parts: Iterator[str], size: int = OUTPUT_CHUNK) -> Iterator[str]:
    """A rendered stream in pieces of about ``size`` characters, not one write per tag."""
    chunk: list[str] = []
    length = 0
    for part in parts:
        chunk.append(part)
        length += len(part)
        if length >= size:
            yield "".join(chunk)
            chunk, length = [], 0
    yield "".join(chunk)


@bp.errorhandler(429)
def too_many_downloads(_error: Exception) -> tuple[str, int, dict[str, str]]:
    """Flask-Limiter's 429 for this blueprint's routes, said plainly."""
    rate = current_app.config["LOG_DOWNLOAD_RATE_LIMIT"]
    return (f"Too many log downloads and whole-output pages: at most {rate} per user "
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
