"""The jobs waiting for a person, in every page's header and at the top of the dashboard,
right on first paint: ``waiting_jobs()`` in templates (templates/_waiting.html), kept
current by static/js/core/waiting.js from the ``jobs:waiting`` broadcast.

Who it waits for is services/waiting.py's rule: operators and admins may promote or
abort, so a waiting job waits "for you"; a viewer reads that it waits for an operator.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, url_for
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from extensions import db
from services.auth.auth_tokens import current_role
from services.waiting import may_act, waiting_jobs

log = logging.getLogger(__name__)


def header_words(count: int, for_you: bool) -> str:
    """"1 rollout waiting for you", "2 rollouts waiting for an operator" (as waiting.js)."""
    noun = "rollout" if count == 1 else "rollouts"
    return f"{count} {noun} waiting for {'you' if for_you else 'an operator'}"


def waiting_view() -> dict[str, Any] | None:
    """The waiting jobs for the current user's pages: ``{count, jobs, for_you, text,
    href}`` (href: the job when there is one, else the history of paused jobs); ``None``
    when nobody is logged in or the database does not answer (a page about that
    failure still renders). Read once per request (the header and the dashboard)."""
    if not current_user.is_authenticated:
        return None
    if "waiting_view" not in g:
        g.waiting_view = _read_view()
    return g.waiting_view


def _read_view() -> dict[str, Any] | None:
    try:
        waiting = waiting_jobs(db.session)
    except SQLAlchemyError:
        log.warning("could not read the jobs waiting for a person", exc_info=True)
        db.session.rollback()
        return None
    for_you = may_act(current_role())
    jobs = waiting["jobs"]
    href = url_for("jobs.job_page", job_id=jobs[0]["job_id"]) if waiting["count"] == 1 \
        else url_for("jobs.history", status="paused")
    return {**waiting, "for_you": for_you, "href": href,
            "text": header_words(waiting["count"], for_you),
            "list_href": url_for("jobs.history", status="paused")}


def register(app: Flask) -> None:
    """``waiting_jobs()`` in every template: called where a page shows it, so a page
    that does not (the login page, an error page) reads nothing."""
    app.jinja_env.globals["waiting_jobs"] = waiting_view
