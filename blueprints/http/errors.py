"""Error pages and JSON errors for refusals that happen before a view runs."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response


def csrf_refused(error: CSRFError) -> tuple[Response | str, int]:
    """A missing or wrong CSRF token: 400 with the reason, and nothing changed."""
    message = f"Request refused: {error.description} Reload the page and try again."
    if request.blueprint == "api" or request.path.startswith("/api/"):
        return jsonify({"ok": False, "error": {"code": "csrf", "message": message,
                                               "field": "csrf_token"}}), 400
    return render_template("errors/forbidden.html", message=message), 400


def register(app: Flask) -> None:
    app.register_error_handler(CSRFError, csrf_refused)
