"""Error pages and JSON errors: refusals that happen before a view runs (CSRF), and
every 404 and 500, each in the form its reader expects.

``/api/`` paths answer in the API's error shape (``{"ok": false, "error": {"code",
"message", "field"}}``); a log download (``….txt``) in plain text; anything else with
the layout, a sentence saying what was not found, and a link back. A view says what is
missing with ``abort(404, description="job #9999 does not exist")``.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import InternalServerError, NotFound
from werkzeug.wrappers import Response

from services.commands import error_body, internal_error
from tasks.errors import PatchbayError

log = logging.getLogger(__name__)
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
SERVER_ERROR = ("something went wrong on our side; it has been logged. Try again, or tell "
                "whoever runs this console")
# Where the link on a 404 page goes, by the blueprint of the page that was not found.
BACK_TO = {"jobs": ("jobs.history", "Back to the jobs"),
           "downloads": ("jobs.history", "Back to the jobs"),
           "webhooks": ("webhooks.list_page", "Back to the webhooks")}


def _is_api() -> bool:
    return request.blueprint == "api" or request.path.startswith("/api/")


def _is_text() -> bool:
    return request.endpoint == "downloads.job_log" or request.path.endswith(".txt")


def csrf_refused(error: CSRFError) -> tuple[Response | str, int]:
    """A missing or wrong CSRF token: 400 with the reason, and nothing changed."""
    message = f"Request refused: {error.description} Reload the page and try again."
    if _is_api():
        return jsonify({"ok": False, "error": {"code": "csrf", "message": message,
                                               "field": "csrf_token"}}), 400
    return render_template("errors/forbidden.html", message=message), 400


def not_found(error: NotFound) -> tuple[Response | str, int] | tuple[str, int, dict]:
    """What was not found, in words: the view's ``description``, else the path."""
    described = error.description != NotFound.description
    if _is_api():
        message = error.description if described else (
            f"there is no API endpoint {request.method} {request.path} "
            "(see /api/openapi.json)")
        return jsonify(error_body(PatchbayError("not_found", message))), 404
    message = error.description if described else f"there is no page at {request.path}"
    if _is_text():
        return f"Not found: {message}.\n", 404, TEXT
    endpoint, label = BACK_TO.get(request.blueprint or "", ("jobs.dashboard",
                                                            "Back to the dashboard"))
    if not current_user.is_authenticated:
        endpoint, label = "auth.login", "Log in"
    return render_template("errors/not_found.html", message=message,
                           back_url=url_for(endpoint), back_label=label), 404


def server_error(error: InternalServerError) -> tuple[Response | str, int] | tuple[str, int, dict]:
    """A failure of ours: a sentence and a way back, never the traceback. Flask has
    logged an unhandled exception (with its traceback) before it calls this."""
    if error.original_exception is None:  # abort(500) by a view: nothing logged yet
        log.error("%s %s answered 500: %s", request.method, request.path, error.description)
    if _is_api():
        return jsonify(error_body(internal_error())), 500
    if _is_text():
        return f"Error: {SERVER_ERROR}.\n", 500, TEXT
    try:
        return render_template("errors/server_error.html", message=SERVER_ERROR), 500
    except Exception:  # the layout itself failed (the database is gone, say)
        log.exception("the error page for %s %s failed too", request.method, request.path)
        return f"Error: {SERVER_ERROR}.\n", 500, TEXT


def register(app: Flask) -> None:
    app.register_error_handler(CSRFError, csrf_refused)
    app.register_error_handler(NotFound, not_found)
    app.register_error_handler(InternalServerError, server_error)
