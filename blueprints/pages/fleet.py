"""The servers page: every server with its tags, reachability, builds (current, previous,
on its way, drift), the job holding it and its last result, grouped by build. Rows are
rendered here and kept current by ``fleet:subscribe`` (see ``blueprints/live/fleet.py``).

Two filters, as query parameters so links to them work: ``drift=1`` (only servers
outside any rollout and not on their tag's agreed build) and ``build=1.4.2`` (only
servers on that build; ``build=unknown``: those that never reported one). Operators
get a Roll back button per server and for a selection (``POST /api/servers/rollback``)."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from extensions import db
from services.builds import annotate, matrix
from services.fleet import fleet_rows
from tasks.errors import PatchbayError

bp = Blueprint("fleet", __name__)
MAX_BUILD_LENGTH = 64
UNKNOWN_BUILD = "unknown"


def _filters() -> dict[str, str | bool]:
    """The page's filters from its query string; ``invalid`` naming the field."""
    drift = request.args.get("drift", "")
    if drift not in ("", "0", "1"):
        raise PatchbayError("invalid", "drift must be 1 (only drifted servers) or 0",
                            "drift")
    build = request.args.get("build", "")
    if len(build) > MAX_BUILD_LENGTH or not build.isprintable():
        raise PatchbayError("invalid", f"build must be a version of at most "
                            f"{MAX_BUILD_LENGTH} printable characters", "build")
    return {"drift": drift == "1", "build": build}


@bp.get("/servers")
@login_required
def servers() -> tuple[str, int] | str:
    rows = annotate(db.session, fleet_rows(db.session))
    try:
        filters = _filters()
    except PatchbayError as exc:
        return render_template("fleet/servers.html", servers=rows, builds=matrix(rows),
                               filters={"drift": False, "build": ""},
                               filter_error=exc.message), 400
    return render_template("fleet/servers.html", servers=rows, builds=matrix(rows),
                           filters=filters, filter_error=None)
