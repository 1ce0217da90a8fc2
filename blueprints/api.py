"""The JSON API (same session login as the pages)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from pydantic import ValidationError
from sqlalchemy import select
from werkzeug.wrappers import Response

from blueprints.audit import record
from blueprints.input_guard import nul_field
from blueprints.job_access import job_snapshot, plan_from, require_job
from blueprints.live import validation_error
from blueprints.query_args import event_query, job_filter
from blueprints.schemas import StartJob
from extensions import db
from models import Server
from tasks.errors import PatchbayError
from tasks.event_pages import read_page, search_output
from tasks.history import jobs_query

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_PAGE = 5000
STATUS_OF = {"not_found": 404, "unauthorized": 401, "forbidden": 403, "server_busy": 409}


@bp.errorhandler(PatchbayError)
def _patchbay_error(exc: PatchbayError) -> Response:
    return _error(exc)


def _error(exc: PatchbayError) -> Response:
    response = jsonify({"ok": False, "error": exc.to_dict()})
    response.status_code = STATUS_OF.get(exc.code, 400)
    return response


def _int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise PatchbayError("invalid",
                            f"{name} must be a whole number from {minimum} to {maximum}", name)
    return int(raw)


def _body(schema: type[StartJob]) -> StartJob:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise PatchbayError("invalid", "the body must be a JSON object")
    refused = nul_field(payload)
    if refused:
        raise PatchbayError("invalid", f"{refused} contains a NUL character", refused)
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None


@bp.get("/servers")
def servers() -> Response:
    servers = db.session.scalars(select(Server).order_by(Server.name))
    return jsonify({"servers": [server.summary() for server in servers]})


@bp.get("/runbooks")
def runbooks() -> Response:
    books = current_app.extensions["patchbay"].runbooks()
    return jsonify({"runbooks": [book.describe() for book in books.values()]})


@bp.get("/jobs")
def jobs() -> Response:
    limit = _int_arg("limit", 50, 1, 500)
    offset = (_int_arg("page", 1, 1, 10**6) - 1) * limit
    rows = db.session.scalars(jobs_query(job_filter(request.args)).offset(offset).limit(limit))
    return jsonify({"jobs": [row.summary() for row in rows]})


@bp.get("/jobs/<int:job_id>")
def job(job_id: int) -> Response:
    return jsonify({"job": job_snapshot(job_id)})


@bp.get("/jobs/<int:job_id>/events")
def job_events(job_id: int) -> Response:
    require_job(job_id)  # 404 for an unknown job rather than an empty list
    query, max_lines = event_query(job_id, request.args, MAX_PAGE)
    events = read_page(db.session, query, max_lines)
    return jsonify({"job_id": job_id, "events": events,
                    "last_seq": events[-1]["seq"] if events else query.after_seq})


@bp.get("/jobs/<int:job_id>/search")
def search_output_lines(job_id: int) -> Response:
    require_job(job_id)
    text = request.args.get("q", "")
    if not 1 <= len(text) <= 200:
        raise PatchbayError("invalid", "q must be 1 to 200 characters", "q")
    matches, more = search_output(current_app.extensions["patchbay"].db_sessions, job_id,
                                  text, host=request.args.get("host") or None,
                                  limit=_int_arg("limit", 100, 1, 500))
    return jsonify({"job_id": job_id, "matches": [m.to_dict() for m in matches],
                    "more": more})


@bp.post("/jobs")
def start_job() -> tuple[Response, int]:
    engine = current_app.extensions["patchbay"]
    data = _body(StartJob)
    job_id = engine.start(plan_from(engine, data), current_user.id)
    record("job.start", f"job #{job_id}", runbook=data.runbook, params=data.params,
           servers=data.servers, tags=data.tags, via="api")
    return jsonify({"ok": True, "job_id": job_id}), 201


@bp.post("/jobs/plan")
def plan_job() -> Response:
    plan = plan_from(current_app.extensions["patchbay"], _body(StartJob))
    return jsonify({"ok": True, "plan": plan.preview()})


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int) -> Response:
    result: dict[str, Any] = current_app.extensions["patchbay"].cancel(job_id)
    record("job.cancel", f"job #{job_id}", cancelled=result["cancelled"], via="api")
    return jsonify({"ok": True, **result})


@bp.post("/jobs/<int:job_id>/rerun")
def rerun_job(job_id: int) -> tuple[Response, int]:
    engine = current_app.extensions["patchbay"]
    new_id = engine.start(engine.rerun_plan(job_id), current_user.id, rerun_of=job_id)
    record("job.rerun", f"job #{new_id}", rerun_of=job_id, via="api")
    return jsonify({"ok": True, "job_id": new_id}), 201
