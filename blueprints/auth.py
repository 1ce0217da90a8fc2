"""Log in and log out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from blueprints.forms import LoginForm
from blueprints.live import disconnect_user
from extensions import db, limiter, socketio
from models import User
from services.audit import record

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def login() -> str | Response:
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.username == form.username.data))
        if user is not None and user.active and user.check_password(form.password.data):
            login_user(user)
            record("login", user.username)
            return redirect(_safe_next(request.args.get("next")))
        # One message whether the user exists or not: no user enumeration.
        error = "Wrong user name or password."
        record("login.failed", None, username=form.username.data[:64])
    elif request.method == "POST":
        error = "Please fill in both fields." if not form.csrf_token.errors else \
            "The form expired; please try again."
    status = 401 if error and request.method == "POST" else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    user_id = current_user.id
    record("logout", current_user.username)
    logout_user()
    # An HTTP logout does not end open sockets: drop every socket of this user.
    socketio.emit("session:ended", {"reason": "logged out"}, to=f"user:{user_id}")
    disconnect_user(user_id)
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def too_many_attempts(error: Exception) -> tuple[str, int]:
    """Flask-Limiter's 429, as the login page with a clear message."""
    message = "Too many login attempts from your address. Wait a minute and try again."
    return render_template("auth/login.html", form=LoginForm(), error=message), 429


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site after login."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") \
                and not target.startswith("//"):
            return target
    return url_for("jobs.dashboard")
