"""The demo fleet of ``make run`` (asyncssh, dash as /bin/sh) works with the engine:
jobs run, failures roll back, and cancel really stops remote commands there too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PROJECT, TEST_RUNBOOKS
from tests.engine_world import build_world
from tests.remote import remote_commands

pytestmark = pytest.mark.asyncmode


@pytest.fixture
def demo_world(app, demo_fleet):
    from extensions import db
    from tasks.inventory import apply_inventory, parse_inventory

    inventory = Path(demo_fleet["inventory"])
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text(), str(inventory)))
        db.session.commit()
    return build_world(app, TEST_RUNBOOKS)


def processes_on(demo_fleet, host_name: str) -> list[str]:
    host = next(h for h in demo_fleet["hosts"] if h["name"] == host_name)
    return remote_commands(host["address"], host["port"], "demo", demo_fleet["client_key"],
                           demo_fleet["known_hosts"])


def test_cancel_stops_remote_commands_on_the_demo_fleet(demo_world, demo_fleet):
    job_id = demo_world.engine.start(
        demo_world.engine.plan("sleepy", {"seconds": "306"}, ["gs-02", "gs-03"]), None)
    demo_world.wait_for(job_id, lambda ev: sum(
        1 for e in ev if e["type"] == "output" and "napping" in e["data"]["lines"]) == 2)

    demo_world.engine.cancel(job_id)
    job = demo_world.wait_finished(job_id, timeout=30)

    assert job.status == "cancelled"
    assert {h.status for h in job.hosts} == {"cancelled"}
    assert "sleep 306" not in processes_on(demo_fleet, "gs-02")


def test_failed_deploy_rolls_back_only_that_server(app, demo_fleet):
    from extensions import db
    from tasks.inventory import apply_inventory, parse_inventory

    inventory = Path(demo_fleet["inventory"])
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text(), str(inventory)))
        db.session.commit()
    world = build_world(app, PROJECT / "runbooks")
    marker = Path(demo_fleet["state_dir"]) / "hosts" / "gs-05" / "FAIL_DEPLOY"
    marker.touch()
    try:
        job = world.wait_finished(world.engine.start(
            world.engine.plan("game-update", {"version": "2.7.1"}, ["gs-04", "gs-05"]), None))
    finally:
        marker.unlink()

    by_name = {h.name: h for h in job.hosts}
    assert (by_name["gs-04"].status, by_name["gs-05"].status) == ("succeeded", "failed")
    assert (by_name["gs-05"].failed_step, by_name["gs-05"].exit_code) == ("deploy", 3)
    events = world.events(job.id)
    rollback = [line for e in events if e["type"] == "output" and e["host"] == "gs-05"
                and e["data"]["step"] == "rollback" for line in e["data"]["lines"]]
    assert rollback[-1].startswith("rolled back: ")
    assert [e["host"] for e in events if e["type"] == "step_started"
            and e["data"]["phase"] == "on_failure"] == ["gs-05"]
    facts = {e["host"]: e["data"].get("facts") for e in events if e["type"] == "host_finished"}
    assert facts["gs-04"] == {"version": "2.7.1"}
