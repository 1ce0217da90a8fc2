"""Pages: the dashboard (start a rollout or an ad-hoc command), the job page (watch it)
and the job history (filtered, paged); and the site's icon at /favicon.ico. (A job's
whole output on one page is with the downloads: ``blueprints/pages/downloads.py``.)"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request, send_from_directory
from flask_login import login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from blueprints.http.query_args import JOB_KINDS, int_arg, job_filter
from extensions import db
from models import JOB_STATUSES, Job, Server, User
from services.console import console_services
from services.history import (
    JobFilter,
    count_jobs,
    history_page,
    runbook_names,
    succeeded_since,
)
from services.job_titles import ROLLBACK, shown_params, titled
from services.step_durations import usual_step_durations
from tasks.errors import PatchbayError
from tasks.planning.adhoc import KIND as ADHOC
from tasks.planning.adhoc import MAX_COMMAND_LENGTH, STEP_NAME
from tasks.planning.runbook_files import RunbookError

bp = Blueprint("jobs", __name__)
RECENT_JOBS = 10
HISTORY_PAGE = 25
FILTER_FIELDS = ("status", "runbook", "kind", "user", "since", "until")


@bp.get("/")
@login_required
def dashboard() -> str:
    try:
        runbooks = [book.describe()
                    for book in console_services().engine.runbooks().values()]
        runbook_error = None
    except RunbookError as exc:
        runbooks, runbook_error = [], str(exc)
    servers = [s.summary() for s in db.session.scalars(select(Server).order_by(Server.name))]
    tags = sorted({tag for server in servers for tag in server["tags"]})
    recent, _ = history_page(db.session, JobFilter(), 1, RECENT_JOBS)
    return render_template(
        "jobs/dashboard.html", runbooks=runbooks, runbook_error=runbook_error,
        servers=servers, tags=tags, recent_jobs=recent,
        default_parallel=current_app.config["DEFAULT_PARALLEL"],
        confirm_servers_over=current_app.config["CONFIRM_SERVERS_OVER"],
        max_command_length=MAX_COMMAND_LENGTH)


@bp.get("/jobs/<int:job_id>")
@login_required
def job_page(job_id: int) -> str:
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404, description=f"job #{job_id} does not exist")
    steps = [STEP_NAME] if job.kind == ADHOC else _runbook_steps(job.runbook, job.kind)
    summary = {**titled(job.summary()), "succeeded_since": succeeded_since(db.session, job.id)}
    usual = usual_step_durations(db.session, job.runbook, job.kind, job.id,
                                 [host["name"] for host in summary["hosts"]])
    return render_template("jobs/job.html", job=summary, steps=steps, usual=usual,
                           params=shown_params(job.kind, job.params))


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The icon where browsers and bots look for it without a <link> (pages link the SVG)."""
    return send_from_directory(current_app.static_folder, "favicon.ico",
                               mimetype="image/vnd.microsoft.icon", max_age=86400)


def _runbook_steps(name: str, kind: str) -> list[str]:
    """The steps a job of ``kind`` runs: a rollback, its runbook's rollback section."""
    try:
        book = console_services().engine.runbooks().get(name)
    except RunbookError:
        book = None
    if book is None:
        return []
    return [step.name for step in (book.spec.rollback if kind == ROLLBACK
                                   else book.spec.steps) or []]


@bp.get("/jobs")
@login_required
def history() -> str:
    filters = {name: request.args.get(name, "").strip() for name in FILTER_FIELDS}
    error = None
    try:
        chosen = job_filter(request.args)
        page = int_arg(request.args, "page", 1, 1, 10**6)
    except PatchbayError as exc:
        chosen, page, error = JobFilter(), 1, exc.message
    jobs, has_next = history_page(db.session, chosen, page, HISTORY_PAGE)
    return render_template(
        "jobs/list.html", jobs=jobs, filters=filters, error=error, page=page,
        has_next=has_next, total=count_jobs(db.session, chosen),
        filtered=any(filters.values()), statuses=JOB_STATUSES, kinds=JOB_KINDS,
        runbooks=runbook_names(db.session),
        users=list(db.session.scalars(select(User.username).order_by(User.username))))
