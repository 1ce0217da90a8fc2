"""Pages: the dashboard (start a rollout), the job page (watch it) and job history."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from flask_login import login_required
from sqlalchemy import select

from extensions import db
from models import Job, Server
from tasks.runbooks import RunbookError

bp = Blueprint("jobs", __name__)
RECENT_JOBS = 10
HISTORY_PAGE = 100


@bp.get("/")
@login_required
def dashboard() -> str:
    try:
        runbooks = [book.describe()
                    for book in current_app.extensions["patchbay"].runbooks().values()]
        runbook_error = None
    except RunbookError as exc:
        runbooks, runbook_error = [], str(exc)
    servers = [s.summary() for s in db.session.scalars(select(Server).order_by(Server.name))]
    tags = sorted({tag for server in servers for tag in server["tags"]})
    recent = db.session.scalars(select(Job).order_by(Job.id.desc()).limit(RECENT_JOBS))
    return render_template(
        "jobs/dashboard.html", runbooks=runbooks, runbook_error=runbook_error,
        servers=servers, tags=tags, recent_jobs=[job.summary() for job in recent],
        default_parallel=current_app.config["DEFAULT_PARALLEL"])


@bp.get("/jobs/<int:job_id>")
@login_required
def job_page(job_id: int) -> str:
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404)
    try:
        book = current_app.extensions["patchbay"].runbooks().get(job.runbook)
    except RunbookError:
        book = None
    steps = [step.name for step in book.spec.steps] if book else []
    return render_template("jobs/job.html", job=job.summary(), steps=steps)


@bp.get("/jobs")
@login_required
def history() -> str:
    jobs = db.session.scalars(select(Job).order_by(Job.id.desc()).limit(HISTORY_PAGE))
    return render_template("jobs/list.html", jobs=[job.summary() for job in jobs])
