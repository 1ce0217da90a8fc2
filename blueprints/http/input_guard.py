"""Refuse NUL characters in input, at the door, with a clear error.

No field of Patchbay has a use for NUL, and PostgreSQL refuses it in text (SQLite takes
it): without this check the same bad input would be a clear 400 on one database and a
500 on the other. Form fields and query arguments are checked before any view runs;
JSON bodies and Socket.IO payloads by :func:`nul_field` where they are parsed.
"""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from werkzeug.wrappers import Response

from services.schemas.nul import NUL


def refuse_nul_in_arguments() -> tuple[Response | str, int] | None:
    for source in (request.args, request.form):
        for key, value in source.items(multi=True):
            if NUL in key or NUL in value:
                return refusal(key.replace(NUL, "") or "argument")
    return None


def refusal(field: str) -> tuple[Response | str, int]:
    message = f"{field} contains a NUL character"
    if request.blueprint == "api" or request.path.startswith("/api/"):
        return jsonify({"ok": False, "error": {"code": "invalid", "message": message,
                                               "field": field}}), 400
    return render_template("errors/forbidden.html", message=f"Request refused: {message}."), 400


def register(app: Flask) -> None:
    app.before_request(refuse_nul_in_arguments)
