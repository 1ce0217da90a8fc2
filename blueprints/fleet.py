"""The servers page."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required
from sqlalchemy import select

from extensions import db
from models import Server

bp = Blueprint("fleet", __name__)


@bp.get("/servers")
@login_required
def servers() -> str:
    rows = db.session.scalars(select(Server).order_by(Server.name))
    return render_template("fleet/servers.html", servers=[s.summary() for s in rows])
