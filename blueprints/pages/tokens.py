"""API tokens: ``/api/tokens`` for scripts, and the user's own page ``/account``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from werkzeug.wrappers import Response

from blueprints.api.openapi import documented
from blueprints.http.forms import CreateTokenForm, error_field_id, first_error
from extensions import db
from models import ApiToken, LoginSession, utcnow
from services.auth import tokens
from services.auth.auth_tokens import current_role
from services.auth.login_state import current_login_session_id
from services.commands import validation_error
from services.console import console_services
from tasks.errors import PatchbayError

bp = Blueprint("tokens", __name__)
# A session older than this (since its login) gives the password again to make a token:
# a stolen cookie alone cannot mint a credential that outlives the session.
REAUTH_AFTER = timedelta(minutes=15)


class TokenSummary(BaseModel):
    id: int
    name: str
    prefix: str
    role: str | None
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    created_from: str | None = Field(description="the address it was created from")


class TokenList(BaseModel):
    ok: bool
    tokens: list[TokenSummary]


class MadeToken(BaseModel):
    ok: bool
    id: int
    name: str
    token: str = Field(description="the token itself: shown this once")
    prefix: str
    role: str
    expires_at: str | None


class RevokedToken(BaseModel):
    ok: bool
    revoked: bool = Field(description="false when it already was")
    token: TokenSummary


class CreateToken(BaseModel):
    """``POST /api/tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    expires_in_days: StrictInt | None = Field(default=None, ge=1,
                                              le=tokens.MAX_EXPIRY_DAYS)
    role: StrictStr | None = None
    password: StrictStr | None = Field(
        default=None, description="your current password: needed when your session "
        "began more than 15 minutes ago")


@bp.errorhandler(PatchbayError)
def _refused(exc: PatchbayError) -> tuple[Response, int]:
    status = {"not_found": 404, "forbidden": 403}.get(exc.code, 400)
    return jsonify({"ok": False, "error": exc.to_dict()}), status


@bp.get("/api/tokens")
@documented("Your API tokens (never their secret part)", answer=TokenList)
def list_tokens() -> Response:
    """The current user's tokens (never their secret part)."""
    return jsonify({"ok": True, "tokens": [t.summary() for t in
                                           tokens.user_tokens(current_user.id)]})


@bp.post("/api/tokens")
@documented("Make an API token for yourself, from a browser session (not with a "
            "token); the answer holds it, shown this once",
            body=CreateToken, answer=MadeToken, status=201, errors=(400, 403))
def create_token() -> tuple[Response, int]:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise PatchbayError("invalid", "the body must be a JSON object")
    try:
        data = CreateToken.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None
    _check_may_create(data.password)
    token, raw = tokens.create_token(current_user, data.name, data.expires_in_days,
                                     data.role, acting_role=current_role(),
                                     created_from=request.remote_addr)
    return jsonify({"ok": True, "id": token.id, "name": token.name, "token": raw,
                    "prefix": token.prefix, "role": token.role or current_user.role,
                    "expires_at": token.summary()["expires_at"]}), 201


@bp.delete("/api/tokens/<int:token_id>")
@documented("Revoke one of your tokens (an admin: anyone's); its sockets are dropped",
            answer=RevokedToken, errors=(404,))
def revoke_token(token_id: int) -> Response:
    token = _revocable(token_id)
    revoked = tokens.revoke_token(token)
    console_services().sockets.end_token(token.id)
    return jsonify({"ok": True, "revoked": revoked, "token": token.summary()})


@bp.get("/account")
def account() -> str:
    return _render_account(_token_form())


@bp.post("/account/tokens")
def create_from_page() -> str | tuple[str, int]:
    form = _token_form()
    if not form.validate_on_submit():
        return _render_account(form, first_error(form)), 400
    try:
        _check_may_create(form.password.data)
        token, raw = tokens.create_token(
            current_user, form.name.data, form.expires_in_days.data,
            form.role.data or None, acting_role=current_role(),
            created_from=request.remote_addr)
    except PatchbayError as exc:
        db.session.rollback()
        return _render_account(form, exc.message, error_field=exc.field), 400
    return _render_account(_token_form(formdata=None), new_token=raw,
                           new_token_name=token.name)


@bp.post("/account/tokens/<int:token_id>/revoke")
def revoke_from_page(token_id: int) -> Response:
    token = _revocable(token_id)
    tokens.revoke_token(token)
    console_services().sockets.end_token(token.id)
    flash(f"Token {token.name} ({token.prefix}…) revoked.", "info")
    return redirect(url_for("tokens.account"))


def _check_may_create(password: str | None) -> None:
    """Tokens come from a browser session only, re-authenticated when it is old.

    A token that could make tokens would let a stolen one (expiring in a day, revoked
    tomorrow) mint a lasting one: bearer requests are refused. A session that began
    more than :data:`REAUTH_AFTER` ago gives the password again."""
    if getattr(g, "api_token", None) is not None:
        raise PatchbayError("forbidden", "API tokens are made from a browser session, not "
                            "with a token: log in on the Account page or run `patchbay "
                            "login`")
    row = db.session.get(LoginSession, current_login_session_id() or 0)
    if row is None:
        raise PatchbayError("forbidden", "API tokens are made from a browser session: "
                            "log in first")
    if utcnow() - row.created_at <= REAUTH_AFTER:
        return
    if not password:
        raise PatchbayError("invalid", "your session began more than 15 minutes ago: give "
                            "your current password to make a token", "password")
    if not current_user.check_password(password):
        raise PatchbayError("invalid", "the password is wrong", "password")


def _revocable(token_id: int) -> ApiToken:
    """A token the current user may revoke: their own; an admin, anyone's."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (token.user_id != current_user.id and current_role() != "admin"):
        raise PatchbayError("not_found", f"no token #{token_id} of yours", "token_id")
    return token


def _token_form(**kwargs: object) -> CreateTokenForm:
    """The form, offering the roles up to the current one (the default)."""
    role = current_role() or "viewer"
    form = CreateTokenForm(**kwargs)
    form.role.choices = [r for r, rank in tokens.ROLE_RANK.items()
                         if rank <= tokens.ROLE_RANK[role]]
    if not form.role.data:
        form.role.data = role
    return form


def _render_account(form: CreateTokenForm, error: str | None = None,
                    new_token: str | None = None, new_token_name: str | None = None,
                    error_field: str | None = None) -> str:
    return render_template("account.html", tokens=tokens.user_tokens(current_user.id),
                           form=form, error=error, new_token=new_token,
                           error_field=error_field_id(form, error_field) if error else None,
                           new_token_name=new_token_name, role=current_role(), now=utcnow())
