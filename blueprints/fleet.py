"""The servers page: every server with its tags, reachability, version, the job holding
it and its last result. Rows are rendered here and kept current by ``fleet:subscribe``
(see ``blueprints/fleet_live.py``)."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from extensions import db
from tasks.fleet import fleet_rows

bp = Blueprint("fleet", __name__)


@bp.get("/servers")
@login_required
def servers() -> str:
    return render_template("fleet/servers.html", servers=fleet_rows(db.session))
