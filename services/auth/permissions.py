"""Who may use which door: one table for every page, API route and Socket.IO event.

Roles are ordered: ``viewer`` (watch) < ``operator`` (start, cancel, re-run, ad-hoc,
promote or abort at a gate, roll back)
< ``admin`` (users, inventory, runbooks). A route or event without a rule is refused
(default deny), and a test walks every registered route and event so a new one without
a rule fails it.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, jsonify, render_template, request
from flask_login import current_user
from werkzeug.wrappers import Response

from extensions import login_manager
from services.auth.auth_tokens import check_socket_token, current_role
from services.console import console_services
from tasks.errors import PatchbayError

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
PUBLIC = "public"

HTTP_RULES: dict[str, str] = {
    "static": PUBLIC,
    "jobs.favicon": PUBLIC,
    "auth.login": PUBLIC,
    "auth.logout": "viewer",
    "jobs.dashboard": "viewer",
    "jobs.job_page": "viewer",
    "downloads.job_output_page": "viewer",
    "jobs.history": "viewer",
    "fleet.servers": "viewer",
    "api.servers": "viewer",
    "api.server_builds": "viewer",
    "api.runbooks": "viewer",
    "api.jobs": "viewer",
    "api.job": "viewer",
    "api.waiting_jobs": "viewer",
    "api.job_events": "viewer",
    "api.search_output_lines": "viewer",
    "api.openapi": "viewer",
    "downloads.job_log": "viewer",
    "api.start_job": "operator",
    "api.plan_job": "operator",
    "api.cancel_job": "operator",
    "api.promote_job": "operator",
    "api.abort_job": "operator",
    "api.rerun_job": "operator",
    # A rollback is a job: the same role as starting one.
    "api.rollback_server": "operator",
    "api.rollback_servers": "operator",
    "admin.users_page": "admin",
    "admin.create_user": "admin",
    "admin.update_user": "admin",
    "admin.audit": "admin",
    "admin.nodes": "admin",
    "webhooks.list_page": "admin",
    "webhooks.create_from_page": "admin",
    "webhooks.hook_page": "admin",
    "webhooks.delete_from_page": "admin",
    "webhooks.list_hooks": "admin",
    "webhooks.create_hook": "admin",
    "webhooks.delete_hook": "admin",
    "webhooks.deliveries": "admin",
    "metrics.scrape": "admin",  # and PATCHBAY_METRICS_ALLOW's addresses: see open_to
    "tokens.list_tokens": "viewer",
    "tokens.create_token": "viewer",
    "tokens.revoke_token": "viewer",
    "tokens.account": "viewer",
    "tokens.create_from_page": "viewer",
    "tokens.revoke_from_page": "viewer",
}

SOCKET_RULES: dict[str, str] = {
    "connect": "viewer",
    "job:subscribe": "viewer",
    "job:unsubscribe": "viewer",
    "job:plan": "operator",
    "job:start": "operator",
    "job:cancel": "operator",
    "job:promote": "operator",
    "job:abort": "operator",
    "job:rerun": "operator",
    "job:adhoc": "operator",
    "fleet:subscribe": "viewer",
}

# What each door does, in the words a refusal uses ("viewers can't start jobs"): people
# refused an action learn which one, never an internal event or endpoint name. Every door
# above viewer has its words (a test checks); a viewer's door falls back to GENERIC_ACTION.
SOCKET_ACTIONS: dict[str, str] = {
    "job:subscribe": "watch jobs",
    "job:unsubscribe": "watch jobs",
    "job:plan": "preview jobs",
    "job:start": "start jobs",
    "job:cancel": "cancel jobs",
    "job:promote": "promote jobs",
    "job:abort": "abort jobs",
    "job:rerun": "re-run jobs",
    "job:adhoc": "run commands",
    "fleet:subscribe": "watch the servers",
}
HTTP_ACTIONS: dict[str, str] = {
    "api.start_job": "start jobs",
    "api.plan_job": "preview jobs",
    "api.cancel_job": "cancel jobs",
    "api.promote_job": "promote jobs",
    "api.abort_job": "abort jobs",
    "api.rerun_job": "re-run jobs",
    "api.rollback_server": "roll servers back",
    "api.rollback_servers": "roll servers back",
    "admin.users_page": "manage users",
    "admin.create_user": "manage users",
    "admin.update_user": "manage users",
    "admin.audit": "read the audit log",
    "admin.nodes": "see the console nodes",
    "webhooks.list_page": "manage webhooks",
    "webhooks.create_from_page": "manage webhooks",
    "webhooks.hook_page": "manage webhooks",
    "webhooks.delete_from_page": "manage webhooks",
    "webhooks.list_hooks": "manage webhooks",
    "webhooks.create_hook": "manage webhooks",
    "webhooks.delete_hook": "manage webhooks",
    "webhooks.deliveries": "manage webhooks",
    "metrics.scrape": "read the metrics",
}
GENERIC_ACTION = "do this"


def has_role(minimum: str) -> bool:
    """Whether the current user holds ``minimum`` or a higher role."""
    if minimum == PUBLIC:
        return True
    role = current_role()
    if role is None:
        return False
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[minimum]


def check_socket_event(event: str) -> None:
    """Raise ``unauthorized``/``forbidden`` unless the current user may send ``event``."""
    if not current_user.is_authenticated:
        raise PatchbayError("unauthorized", "log in first")
    check_socket_token()
    rule = SOCKET_RULES.get(event)
    if rule is None or not has_role(rule):
        raise PatchbayError("forbidden", refusal(SOCKET_ACTIONS.get(event), rule))


def refusal(action: str | None, needed: str | None) -> str:
    """Why the current user is refused ``action`` ("viewers can't start jobs (that
    takes the operator role)"), in words, never naming an event or an endpoint."""
    role = current_role()
    who = f"{role}s" if role in ROLE_RANK else "your role"
    if needed is None:  # a door without a rule: refused to everyone
        return f"nobody can {action or GENERIC_ACTION}: it is open to no role"
    return f"{who} can't {action or GENERIC_ACTION} (that takes the {needed} role)"


def _guard_request() -> Response | tuple[Response, int] | tuple[str, int] | None:
    if request.endpoint is None:  # 404 / 405: let Flask answer
        return None
    rule = HTTP_RULES.get(request.endpoint)
    if rule == PUBLIC or _opened(request.endpoint):
        return None
    if not current_user.is_authenticated:
        if _is_api():
            return _json_error("unauthorized", "log in first", 401)
        return login_manager.unauthorized()
    if rule is not None and has_role(rule):
        return None
    message = refusal(HTTP_ACTIONS.get(request.endpoint), rule)
    if _is_api():
        return _json_error("forbidden", message, 403)
    return render_template("errors/forbidden.html", message=message), 403


def open_to(app: Flask, endpoint: str, opens: Callable[[], bool]) -> None:
    """Let any request through ``endpoint`` while ``opens()`` says so (for machines that
    cannot log in, such as a Prometheus server at an allowed address); otherwise the
    endpoint's rule decides, as for every door."""
    console_services(app).open_doors[endpoint] = opens


def _opened(endpoint: str) -> bool:
    opens = console_services().open_doors.get(endpoint)
    return opens is not None and opens()


def _is_api() -> bool:
    """JSON answers (401, not a login redirect) for every ``/api/`` route, whichever
    blueprint serves it, and for ``/metrics``: machines read them."""
    return request.blueprint in ("api", "metrics") or request.path.startswith("/api/")


def _json_error(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"ok": False, "error": {"code": code, "message": message,
                                           "field": None}}), status


def register(app: Flask) -> None:
    app.before_request(_guard_request)
    app.jinja_env.globals["has_role"] = has_role
    app.jinja_env.globals["current_role"] = current_role
