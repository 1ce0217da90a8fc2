"""Webhooks, for admins: the pages ``/admin/webhooks`` (list, add, delete) and
``/admin/webhooks/<id>`` (its delivery log), and the JSON API ``/api/webhooks``.

Both ways in check a webhook with :func:`services.webhooks.spec.parse_hook` (the URL also
against this node's ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS``) and audit what they change.
A webhook's secret is never shown again: answers and pages say only whether one is
set, show the URL with any user name and password masked, and the audit entry names
the URL's host only.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response

from blueprints.api.openapi import documented
from blueprints.http.errors import csrf_refused
from blueprints.http.forms import error_field_id, first_error
from blueprints.http.query_args import int_arg
from blueprints.http.webhook_forms import EVENT_LABELS, WebhookForm
from extensions import db
from models import Webhook
from services import webhooks
from services.audit import record
from services.console import console_services
from services.schemas.nul import nul_field
from services.webhooks.address import AddressPolicy
from tasks.errors import PatchbayError

bp = Blueprint("webhooks", __name__)
LOG_PAGE = 100
STATUS_OF = {"not_found": 404, "forbidden": 403}


@bp.errorhandler(PatchbayError)
def _refused(exc: PatchbayError) -> tuple[Response, int]:
    return jsonify({"ok": False, "error": exc.to_dict()}), STATUS_OF.get(exc.code, 400)


@bp.errorhandler(CSRFError)
def _csrf_refused(error: CSRFError) -> tuple[Response | str, int]:
    if request.path.startswith("/api/"):
        return jsonify({"ok": False, "error": {
            "code": "csrf", "field": "csrf_token",
            "message": f"Request refused: {error.description} Send the page's token in "
                       "the X-CSRFToken header, or use an API token."}}), 400
    return csrf_refused(error)


# -- the JSON API ---------------------------------------------------------------------


@bp.get("/api/webhooks")
@documented("Every webhook (admins; never its secret, only has_secret)")
def list_hooks() -> Response:
    return jsonify({"ok": True, "webhooks": [_shown(hook) for hook in
                                             webhooks.list_webhooks(db.session)]})


@bp.post("/api/webhooks")
@documented("Register a webhook: {url, events, secret?, format?} (docs/webhooks.md)",
            status=201, errors=(400,))
def create_hook() -> tuple[Response, int]:
    payload = request.get_json(silent=True)
    refused = nul_field(payload) if isinstance(payload, dict) else None
    if refused:
        raise PatchbayError("invalid", f"{refused} contains a NUL character", refused)
    hook = _create(webhooks.parse_hook(payload, addresses=_addresses()), via="api")
    return jsonify({"ok": True, "webhook": _shown(hook)}), 201


@bp.delete("/api/webhooks/<int:webhook_id>")
@documented("Delete a webhook and its deliveries", errors=(404,))
def delete_hook(webhook_id: int) -> Response:
    hook = _delete(webhook_id, via="api")
    return jsonify({"ok": True, "webhook": hook})


@bp.get("/api/webhooks/<int:webhook_id>/deliveries")
@documented("A webhook's delivery log, newest first (limit, before)", errors=(400, 404))
def deliveries(webhook_id: int) -> Response:
    hook = webhooks.get_webhook(db.session, webhook_id)
    limit = int_arg(request.args, "limit", LOG_PAGE, 1, 1000)
    before = int_arg(request.args, "before", 0, 1, 2**62) or None
    rows = webhooks.delivery_log(db.session, hook.id, limit, before)
    return jsonify({"ok": True, "webhook": _shown(hook),
                    "deliveries": [row.summary() for row in rows]})


# -- the pages ------------------------------------------------------------------------


@bp.get("/admin/webhooks")
def list_page() -> str:
    return _render_list(WebhookForm())


@bp.post("/admin/webhooks")
def create_from_page() -> Response | tuple[str, int]:
    form = WebhookForm()
    if not form.validate_on_submit():
        return _render_list(form, first_error(form)), 400
    try:
        hook = _create(webhooks.parse_hook({
            "url": form.url.data, "events": form.events.data or [],
            "secret": form.secret.data or None, "format": form.format.data},
            addresses=_addresses()), via="page")
    except PatchbayError as exc:
        db.session.rollback()
        return _render_list(form, exc.message, exc.field), 400
    flash(f"Webhook #{hook.id} added: {webhooks.safe_url(hook.url)}", "info")
    return redirect(url_for("webhooks.hook_page", webhook_id=hook.id))


@bp.get("/admin/webhooks/<int:webhook_id>")
def hook_page(webhook_id: int) -> str:
    hook = db.session.get(Webhook, webhook_id)
    if hook is None:
        abort(404, description=f"webhook #{webhook_id} does not exist")
    rows = webhooks.delivery_log(db.session, hook.id, LOG_PAGE)
    return render_template("admin/webhook.html", hook=_shown(hook), deliveries=rows,
                           event_labels=EVENT_LABELS, page_size=LOG_PAGE)


@bp.post("/admin/webhooks/<int:webhook_id>/delete")
def delete_from_page(webhook_id: int) -> Response:
    if db.session.get(Webhook, webhook_id) is None:
        abort(404, description=f"webhook #{webhook_id} does not exist")
    _delete(webhook_id, via="page")
    flash(f"Webhook #{webhook_id} deleted.", "info")
    return redirect(url_for("webhooks.list_page"))


# -- shared by both -------------------------------------------------------------------


def _addresses() -> AddressPolicy:
    """Where this node's deliveries may connect (``PATCHBAY_WEBHOOK_ALLOW_NETWORKS``)."""
    return console_services().webhooks.settings.addresses


def _shown(hook: Webhook) -> dict[str, Any]:
    """A webhook as answers and pages show it: its URL's user info masked."""
    return {**hook.summary(), "url": webhooks.shown_url(hook.url)}


def _create(spec: webhooks.HookSpec, via: str) -> Webhook:
    hook = webhooks.create_webhook(db.session, spec, current_user.id)
    record("webhook.create", f"webhook #{hook.id}", commit=False, via=via,
           url=webhooks.safe_url(hook.url), events=list(spec.events), format=spec.format,
           signed=spec.secret is not None)
    db.session.commit()
    return hook


def _delete(webhook_id: int, via: str) -> dict[str, Any]:
    summary = _shown(webhooks.get_webhook(db.session, webhook_id))
    webhooks.delete_webhook(db.session, webhook_id)
    record("webhook.delete", f"webhook #{webhook_id}", commit=False, via=via,
           url=webhooks.safe_url(summary["url"]))
    db.session.commit()
    return summary


def _render_list(form: WebhookForm, error: str | None = None,
                 error_field: str | None = None) -> str:
    return render_template("admin/webhooks.html", hooks=[
        _shown(hook) for hook in webhooks.list_webhooks(db.session)],
        counts=webhooks.delivery_counts(db.session), form=form, error=error,
        error_field=error_field_id(form, error_field) if error else None,
        event_labels=EVENT_LABELS)
