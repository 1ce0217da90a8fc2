"""A server's build history (``GET /api/servers/<name>/builds``) and the build a
rollback would install, in ``GET /api/servers`` too: after a rollback from 1.0.8 to
1.0.7, the next one offers 1.0.6, never the build just rejected. Over real OpenSSH
servers, checked against the OpenAPI document."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, TEST_RUNBOOKS, write_inventory
from tests.support.engine_world import build_world
from tests.web.test_openapi import answer_problems


@pytest.fixture
def world(app, sshd_fleet, tmp_path):
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory

    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    return build_world(app, TEST_RUNBOOKS)


def run(world, book, params, hosts):
    job = world.wait_finished(world.engine.start(world.engine.plan(book, params, hosts),
                                                 None))
    assert job.status == "succeeded"
    return job.id


def roll_back(world, hosts):
    from tasks.planning.rollback import rollback_runbook

    with world.sessions() as session:
        book, _ = rollback_runbook(session, world.engine.runbooks(), hosts, None)
    return run(world, book, None, hosts)


def test_a_servers_build_history_and_its_rollback_target(app, world, client, auth):
    auth.create("vera", role="viewer")
    auth.login("vera", PASSWORD)
    jobs = [run(world, "versioned", {"version": version}, ["h01", "h02"])
            for version in ("1.0.6", "1.0.7", "1.0.8")]
    back = roll_back(world, ["h01"])

    answer = client.get("/api/servers/h01/builds")
    history = answer.get_json()
    assert answer.status_code == 200, history
    assert [(b["version"], b["job_id"], b["kind"], b["status"], b["succeeded"])
            for b in history["builds"]] == [
        ("1.0.7", back, "rollback", "succeeded", True),
        ("1.0.8", jobs[2], "runbook", "succeeded", True),
        ("1.0.7", jobs[1], "runbook", "succeeded", True),
        ("1.0.6", jobs[0], "runbook", "succeeded", True)]
    assert {b["runbook"] for b in history["builds"]} == {"versioned"}
    assert all(b["reported_at"].endswith("Z") for b in history["builds"])
    assert (history["server"], history["version"], history["more"]) == ("h01", "1.0.7",
                                                                        False)
    # Not 1.0.8, the build it was just rolled back from: the last good one below 1.0.7.
    assert (history["rollback_version"], history["rollback_job_id"],
            history["rollback_reason"]) == (
        "1.0.6", jobs[0],
        f"1.0.6, the last build that succeeded here before 1.0.7 (job #{jobs[0]})")

    rows = {row["name"]: row for row in client.get("/api/servers").get_json()["servers"]}
    assert [(rows[n]["rollback_version"], rows[n]["rollback_job_id"])
            for n in ("h01", "h02", "h03")] == [("1.0.6", jobs[0]), ("1.0.7", jobs[1]),
                                               (None, None)]
    assert rows["h02"]["rollback_reason"].startswith("1.0.7, the last build that "
                                                     "succeeded here before 1.0.8")
    assert rows["h03"]["rollback_reason"] is None  # never ran a job

    document = client.get("/api/openapi.json").get_json()
    template = "/api/servers/{name}/builds"
    assert answer_problems(document, template, "get", 200, history) == []
    assert answer_problems(document, "/api/servers", "get", 200,
                           {"servers": list(rows.values())}) == []
    unknown = client.get("/api/servers/gs-99/builds")
    assert (unknown.status_code, unknown.get_json()) == (404, {"ok": False, "error": {
        "code": "not_found", "message": "unknown server 'gs-99'", "field": "name"}})
    assert answer_problems(document, template, "get", 404, unknown.get_json()) == []
    empty = client.get("/api/servers/h03/builds").get_json()
    assert (empty["builds"], empty["rollback_version"]) == ([], None)

    anonymous = app.test_client().get("/api/servers/h01/builds")
    assert (anonymous.status_code, anonymous.get_json()["error"]["code"]) == (
        401, "unauthorized")
