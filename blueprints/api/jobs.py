"""The JSON API (same session login as the pages).

Every job action here is also a Socket.IO event: both doors parse with the same schemas,
call the same command service (``services/commands.py``) and shape errors the same way,
``{"ok": false, "error": {"code", "message", "field"}}`` with a fitting status.
``/api/openapi.json`` describes every route (``blueprints/api/openapi.py``).
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from blueprints.api.openapi import documented, openapi_document
from blueprints.http.query_args import MAX_SEQ, event_query, int_arg, job_filter
from blueprints.live.job_access import job_snapshot, require_job
from config import VERSION
from extensions import db
from services.auth.auth_tokens import current_role
from services.builds import server_history, server_rows
from services.commands import (
    Caller,
    Commands,
    error_body,
    http_status,
    internal_error,
    parse,
    parse_job_request,
)
from services.console import console_services
from services.history import jobs_page
from services.schemas.answers import (
    CancelAnswer,
    EventPage,
    GateAnswer,
    JobAnswer,
    JobList,
    JobStarted,
    PlanAnswer,
    RunbookList,
    SearchAnswer,
    ServerBuilds,
    ServerList,
    WaitingJobs,
)
from services.schemas.payloads import AdhocCommand, RollbackServer, RollbackServers, StartJob
from services.schemas.queries import EventPageQuery, JobListQuery, SearchQuery
from services.waiting import may_act
from services.waiting import waiting_jobs as jobs_waiting
from tasks.errors import PatchbayError
from tasks.events.output_search import search_output
from tasks.events.pages import read_page

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)
MAX_PAGE = 5000


@bp.errorhandler(PatchbayError)
def _patchbay_error(exc: PatchbayError) -> tuple[Response, int]:
    return jsonify(error_body(exc)), http_status(exc)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[Response, int] | HTTPException:
    """A failure of ours answers in the API's error shape, as the socket's ack does."""
    if isinstance(exc, HTTPException):
        return exc
    log.exception("API request %s %s failed", request.method, request.path)
    error = internal_error()
    return jsonify(error_body(error)), http_status(error)


def _commands() -> Commands:
    return console_services().commands


def _caller() -> Caller:
    return Caller(current_user.id, "api")


def _max_page_bytes() -> int:
    return int(current_app.config["MAX_PAGE_BYTES"])


@bp.get("/openapi.json")
@documented("This document: OpenAPI 3.1, generated from the routes and their schemas")
def openapi() -> Response:
    return jsonify(openapi_document(current_app, VERSION))


@bp.get("/servers")
@documented("Every server of the inventory, by name, with its builds (current, previous, "
            "on its way) and whether it drifts from its tag's agreed build",
            answer=ServerList)
def servers() -> Response:
    return jsonify({"servers": server_rows(db.session)})


@bp.get("/servers/<name>/builds")
@documented("A server's build history, newest first: each build it reported at the end "
            "of a job, when, the job and whether it succeeded there; and the build a "
            "rollback would put it back on", answer=ServerBuilds, errors=(404,))
def server_builds(name: str) -> Response:
    return jsonify(server_history(db.session, name))


@bp.post("/servers/<name>/rollback")
@documented("Roll one server back to its previous build: a job of kind rollback running "
            "a runbook's rollback section", body=RollbackServer, answer=JobStarted,
            status=201, errors=(400, 409))
def rollback_server(name: str) -> tuple[Response, int]:
    payload = request.get_json(silent=True)
    chosen = parse(RollbackServer, {} if payload is None else payload, "body")
    job_id = _commands().rollback([name], chosen.runbook, _caller())
    return jsonify({"ok": True, "job_id": job_id}), 201


@bp.post("/servers/rollback")
@documented("Roll several servers back, each to its previous build, in one rollback job",
            body=RollbackServers, answer=JobStarted, status=201, errors=(400, 409))
def rollback_servers() -> tuple[Response, int]:
    chosen = parse(RollbackServers, request.get_json(silent=True), "body")
    job_id = _commands().rollback(chosen.servers, chosen.runbook, _caller())
    return jsonify({"ok": True, "job_id": job_id}), 201


@bp.get("/runbooks")
@documented("Every runbook, with its parameters' types and patterns", answer=RunbookList)
def runbooks() -> Response:
    books = console_services().engine.runbooks()
    return jsonify({"runbooks": [book.describe() for book in books.values()]})


@bp.get("/jobs")
@documented("The job history, newest first, filtered and paged like the history page",
            query=JobListQuery, answer=JobList, errors=(400,))
def jobs() -> Response:
    limit = int_arg(request.args, "limit", 50, 1, 500)
    offset = (int_arg(request.args, "page", 1, 1, 10**6) - 1) * limit
    before_id = int_arg(request.args, "before_id", 0, 0, MAX_SEQ) or None
    found, more = jobs_page(db.session, job_filter(request.args), offset, limit,
                            before_id, _max_page_bytes())
    return jsonify({"jobs": found, "more": more,
                    "next_before_id": found[-1]["id"] if more else None})


@bp.get("/jobs/waiting")
@documented("The jobs waiting for a person (paused at a manual gate), oldest first, and "
            "whether they wait for the caller (the header's \"1 rollout waiting for you\"; "
            "jobs:waiting broadcasts the same list)", answer=WaitingJobs)
def waiting_jobs() -> Response:
    return jsonify({**jobs_waiting(db.session), "for_you": may_act(current_role())})


@bp.get("/jobs/<int:job_id>")
@documented("One job: status, counts and servers (the job:subscribe ack's job)",
            answer=JobAnswer, errors=(404,))
def job(job_id: int) -> Response:
    return jsonify({"job": job_snapshot(job_id)})


@bp.get("/jobs/<int:job_id>/events")
@documented("A page of the job's event log, by seq", query=EventPageQuery,
            answer=EventPage, errors=(400, 404))
def job_events(job_id: int) -> Response:
    require_job(job_id)  # 404 for an unknown job rather than an empty list
    query, max_lines = event_query(job_id, request.args, MAX_PAGE)
    page = read_page(db.session, query, max_lines, max_bytes=_max_page_bytes())
    events = page.events
    return jsonify({"job_id": job_id, "events": events, "more": page.more,
                    "last_seq": events[-1]["seq"] if events else query.after_seq})


@bp.get("/jobs/<int:job_id>/search")
@documented("Output lines containing a text", query=SearchQuery, answer=SearchAnswer,
            errors=(400, 404, 422))
def search_output_lines(job_id: int) -> Response:
    require_job(job_id)
    text = request.args.get("q", "")
    if not 1 <= len(text) <= 200:
        raise PatchbayError("invalid", "q must be 1 to 200 characters", "q")
    before = request.args.get("before_seq")
    matches, more = search_output(
        console_services().engine.db_sessions, job_id, text,
        host=request.args.get("host") or None,
        after_seq=int_arg(request.args, "after_seq", 0, 0, MAX_SEQ),
        before_seq=None if before in (None, "") else int_arg(request.args, "before_seq", 1,
                                                                  1, MAX_SEQ),
        limit=int_arg(request.args, "limit", 100, 1, 500),
        max_events=int(current_app.config["SEARCH_MAX_EVENTS"]))
    return jsonify({"job_id": job_id, "matches": [m.to_dict() for m in matches],
                    "more": more})


@bp.post("/jobs")
@documented("Start a runbook job (runbook) or an ad-hoc command (command), as job:start "
            "and job:adhoc", body=(StartJob, AdhocCommand), answer=JobStarted, status=201,
            errors=(400, 409))
def start_job() -> tuple[Response, int]:
    job_id = _commands().start(parse_job_request(request.get_json(silent=True)), _caller())
    return jsonify({"ok": True, "job_id": job_id}), 201


@bp.post("/jobs/plan")
@documented("What a job would run on each server, as job:plan; starts nothing",
            body=StartJob, answer=PlanAnswer, errors=(400,))
def plan_job() -> Response:
    plan = _commands().plan(parse(StartJob, request.get_json(silent=True), "body"))
    return jsonify({"ok": True, "plan": plan})


@bp.post("/jobs/<int:job_id>/promote")
@documented("Promote a job paused at a manual gate: its next batch runs, as job:promote",
            answer=GateAnswer, errors=(400, 404))
def promote_job(job_id: int) -> Response:
    return jsonify({"ok": True, **_commands().promote(job_id, _caller())})


@bp.post("/jobs/<int:job_id>/abort")
@documented("Abort a job paused at a manual gate: its servers not started are skipped and "
            "it ends cancelled, as job:abort", answer=GateAnswer, errors=(400, 404))
def abort_job(job_id: int) -> Response:
    return jsonify({"ok": True, **_commands().abort(job_id, _caller())})


@bp.post("/jobs/<int:job_id>/cancel")
@documented("Cancel a running job, as job:cancel", answer=CancelAnswer, errors=(404,))
def cancel_job(job_id: int) -> Response:
    return jsonify({"ok": True, **_commands().cancel(job_id, _caller())})


@bp.post("/jobs/<int:job_id>/rerun")
@documented("Start a finished job again on its servers that did not succeed, as job:rerun",
            answer=JobStarted, status=201, errors=(400, 404, 409))
def rerun_job(job_id: int) -> tuple[Response, int]:
    return jsonify({"ok": True, "job_id": _commands().rerun(job_id, _caller())}), 201
