"""Log in and log out."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from blueprints.http.forms import LoginForm
from extensions import db, limiter, socketio
from models import User
from services.audit import record
from services.auth.login_slowdown import LoginSlowdown
from services.auth.login_state import log_in, log_out
from services.console import console_services
from tasks.meters import LOGIN_SLOWDOWNS, LOGINS_DELAYED

bp = Blueprint("auth", __name__)

# Checked when the user name is unknown or disabled, so a wrong login takes as long
# whoever it names: the answer's timing must not tell which user names exist.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


def _account_key() -> str:
    """The per-account login limit counts failures of one account from one address:
    an attacker elsewhere cannot lock the real user out."""
    name = (request.form.get("username") or "").strip().lower()[:64]
    return f"{name}|{get_remote_address()}"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
@limiter.limit(lambda: current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"], methods=["POST"],
               key_func=_account_key, scope="login-account",
               deduct_when=lambda response: response.status_code == 401,
               meta_limits=[lambda: current_app.config["LOGIN_ACCOUNT_META_LIMIT"]])
def login() -> str | Response:
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        slowdown: LoginSlowdown = console_services().login_slowdown
        delay = slowdown.rule.delay(slowdown.failures(form.username.data))
        if delay:
            LOGINS_DELAYED.inc()
            wait_before_answer(delay)
        user = db.session.scalar(select(User).where(User.username == form.username.data))
        if user is not None and user.active:
            accepted = user.check_password(form.password.data)
        else:
            check_password_hash(_DUMMY_HASH, form.password.data)
            accepted = False
        if accepted:
            log_in(user)
            record("login", user.username)
            return redirect(_safe_next(request.args.get("next")))
        # One message whether the user exists or not: no user enumeration.
        error = "Wrong user name or password."
        record("login.failed", None, username=loggable_username(form.username.data))
        if slowdown.note_failure(form.username.data):
            LOGIN_SLOWDOWNS.inc()
            record("login.slowed", None, username=loggable_username(form.username.data),
                   failures=slowdown.rule.after,
                   window_seconds=slowdown.rule.window_seconds)
    elif request.method == "POST":
        error = "Please fill in both fields." if not form.csrf_token.errors else \
            "The form expired; please try again."
    status = 401 if error and request.method == "POST" else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    user_id, username = current_user.id, current_user.username
    record("logout", username)
    session_id = log_out()
    # Only this browser's session ends (a copied cookie of it too); its open sockets go.
    if session_id is not None:
        console_services().sockets.end_login(session_id, "logged out")
    else:
        console_services().sockets.end_user(user_id)
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def wait_before_answer(seconds: float) -> None:
    """The slow-down's delay (a greenlet's sleep under eventlet or gevent)."""
    socketio.sleep(seconds)


def loggable_username(typed: str | None) -> str:
    """A typed user name fit for the audit log: printable characters only, cut short
    (a failed login's name is attacker-chosen text)."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in (typed or ""))
    return cleaned[:32] + ("…" if len(cleaned) > 32 else "")


def too_many_attempts(error: Exception) -> tuple[str, int]:
    """Flask-Limiter's 429, as the login page with a clear message."""
    limit = getattr(error, "limit", None)
    if getattr(limit, "scope", None) == "login-account":
        message = ("Too many failed logins for this account from your address. "
                   "Wait a while and try again; each further limit waits longer.")
    else:
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
