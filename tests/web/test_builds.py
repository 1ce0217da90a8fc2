"""Builds across the fleet (services/builds.py): the version matrix and drift after a
rollout with mixed results over real OpenSSH servers, and the rules themselves."""

from __future__ import annotations

import pytest

from services.builds import BuildRow, Drift, agreed, drift, matrix, newest, version_key
from tests.conftest import TEST_RUNBOOKS, write_inventory
from tests.support.engine_world import build_world
from tests.support.remote import unique_seconds
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres]

NAP_HELD = unique_seconds(47)  # the job holding h08 while its target build is checked


@pytest.fixture
def world(app, sshd_fleet, tmp_path):
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory

    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    return build_world(app, TEST_RUNBOOKS)


def api_servers(client) -> dict[str, dict]:
    answer = client.get("/api/servers")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return {row["name"]: row for row in answer.get_json()["servers"]}


def test_matrix_and_drift_after_a_rollout_with_mixed_results(world, sshd_fleet, client,
                                                             auth):
    auth.create("viewer-vic", role="viewer")
    auth.login("viewer-vic")
    first = ["h01", "h02", "h03", "h04", "h05", "h06", "h07"]  # h08 never gets a build
    engine = world.engine
    assert world.wait_finished(engine.start(engine.plan(
        "versioned", {"version": "1.4.2"}, first), None)).status == "succeeded"
    # 1.4.10 is newer than 1.4.2 (natural order); it fails on h03 and h06.
    second = world.wait_finished(engine.start(engine.plan(
        "versioned", {"version": "1.4.10", "fail_on": "h03,h06"}, first), None))
    assert {h.name: h.status for h in second.hosts} == {
        name: "failed" if name in ("h03", "h06") else "succeeded" for name in first}
    assert second.target_version == "1.4.10"

    rows = api_servers(client)
    builds = {name: (row["version"], row["previous_version"], row["drift"],
                     row["newest_version"], row["target_version"])
              for name, row in rows.items()}
    upgraded = ("1.4.10", "1.4.2", False, "1.4.10", None)
    left_behind = ("1.4.2", None, True, "1.4.10", None)  # it only ever reported 1.4.2
    assert builds == {"h01": upgraded, "h02": upgraded, "h03": left_behind,
                      "h04": upgraded, "h05": upgraded, "h06": left_behind,
                      "h07": upgraded, "h08": (None, None, False, "1.4.10", None)}
    # The failed install ran a step after 1.4.2 was reported: no longer verified.
    assert rows["h03"]["version_state"] == "unverified"
    assert rows["h01"]["version_state"] == "verified"
    assert matrix(rows.values()) == [
        {"version": "1.4.10", "count": 5, "servers": ["h01", "h02", "h04", "h05", "h07"],
         "drifted": 0},
        {"version": "1.4.2", "count": 2, "servers": ["h03", "h06"], "drifted": 2},
        {"version": None, "count": 1, "servers": ["h08"], "drifted": 0},
    ]

    # The servers page groups and filters the same way (links work: query parameters).
    page = client.get("/servers?drift=1").get_data(as_text=True)
    assert 'id="drift-count">(2)' in page
    assert '<tr data-server="h03">' in page and '<tr data-server="h06">' in page
    assert '<tr data-server="h01" hidden>' in page
    assert "rollback-one" not in page and "id=\"role-note\"" in page  # a viewer
    page = client.get("/servers?build=1.4.10").get_data(as_text=True)
    assert '<tr data-server="h01">' in page and '<tr data-server="h03" hidden>' in page
    refused = client.get("/servers?drift=maybe")
    assert refused.status_code == 400
    assert "drift must be 1 (only drifted servers) or 0" in refused.get_data(as_text=True)

    # A live job holding a server shows the build on its way, until it ends.
    held = engine.start(engine.plan("versioned", {"version": "2.0.0", "nap": NAP_HELD},
                                    ["h08"]), None)
    try:
        wait_until(lambda: api_servers(client)["h08"]["target_version"] == "2.0.0",
                   what="h08's target build")
        assert {name for name, row in api_servers(client).items()
                if row["target_version"]} == {"h08"}
    finally:
        engine.cancel(held)
    assert world.wait_finished(held).status == "cancelled"
    assert api_servers(client)["h08"]["target_version"] is None


def test_versions_compare_naturally():
    ordered = ["0.9", "1.4", "1.4.rc1", "1.4.0", "1.4.2", "1.4.10", "1.9.2", "1.10.0",
               "2.0.0"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert newest(["1.9.2", None, "1.10.0", "1.2"]) == "1.10.0"
    assert newest([None, None]) is None
    assert newest([]) is None


def test_drift_compares_servers_sharing_a_tag_with_the_build_most_of_them_run():
    found = drift([
        BuildRow("eu-1", ("eu",), "1.4.3"),  # ahead of the agreed build: drifts too
        BuildRow("eu-2", ("eu",), "1.4.2"),
        BuildRow("us-1", ("us",), "1.4.2"),
        BuildRow("both", ("eu", "us"), "1.4.2"),  # its peers: eu and us, each once
        BuildRow("lone-1", (), "2.0.0"),  # untagged: compared with untagged only
        BuildRow("lone-2", (), "1.10.0"),  # a tie goes to the newer build
        BuildRow("new", ("eu",), None),  # never reported: no drift, not counted
    ])
    assert found == {
        "eu-1": Drift("1.4.3", True, "1.4.2"), "eu-2": Drift("1.4.3", False, "1.4.2"),
        "us-1": Drift("1.4.2", False, "1.4.2"), "both": Drift("1.4.3", False, "1.4.2"),
        "lone-1": Drift("2.0.0", False, "2.0.0"), "lone-2": Drift("2.0.0", True, "2.0.0"),
        "new": Drift("1.4.3", False, "1.4.2"),
    }


def test_servers_in_a_rollout_never_drift_and_a_stopped_canary_does():
    fleet = [BuildRow("gs-01", ("demo",), "1.4.9")] + [
        BuildRow(f"gs-0{n}", ("demo",), "1.4.8") for n in range(2, 9)]
    paused = drift(fleet, in_rollout={row.name for row in fleet})
    assert not any(found.drift for found in paused.values())
    stopped = drift(fleet)  # the canary's job ended without going further
    assert {name for name, found in stopped.items() if found.drift} == {"gs-01"}
    assert stopped["gs-01"] == Drift("1.4.9", True, "1.4.8")
    assert agreed(["1.4.8", "1.4.9", None]) == "1.4.9" and agreed([None]) is None


def test_unknown_versions_alone_have_no_newest_build():
    assert drift([BuildRow("a", ("x",), None), BuildRow("b", (), None)]) == {
        "a": Drift(None, False, None), "b": Drift(None, False, None)}
    assert matrix([{"name": "b", "version": None}, {"name": "a", "version": None}]) == [
        {"version": None, "count": 2, "servers": ["a", "b"], "drifted": 0}]


def test_matrix_orders_builds_newest_first():
    rows = [{"name": "a", "version": "1.9.2", "drift": True},
            {"name": "b", "version": "1.10.0", "drift": False},
            {"name": "c", "version": "1.9.2", "drift": False}]
    assert [(group["version"], group["count"], group["drifted"])
            for group in matrix(rows)] == [("1.10.0", 1, 0), ("1.9.2", 2, 1)]
