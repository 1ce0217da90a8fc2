"""The demo fleet of ``make run`` (asyncssh, dash as /bin/sh) works with the engine:
jobs run, failures roll back, cancel really stops remote commands there too, and the
demo deploy streams its download and waits for the game server like a real one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT, TEST_RUNBOOKS
from tests.engine_world import build_world
from tests.remote import remote_commands, unique_seconds

pytestmark = pytest.mark.asyncmode
NAP = unique_seconds(10)  # found on the servers by its command line


PROGRESS = re.compile(r"downloading build (?P<version>\S+): (?P<percent>\d+)% "
                      r"\((?P<done>[\d.]+) MiB of (?P<total>[\d.]+) MiB, "
                      r"(?P<rate>[\d.]+) MiB/s\)")


def import_demo_inventory(app, demo_fleet) -> None:
    from extensions import db
    from tasks.inventory import apply_inventory, parse_inventory

    inventory = Path(demo_fleet["inventory"])
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text(), str(inventory)))
        db.session.commit()


@pytest.fixture
def demo_world(app, demo_fleet):
    import_demo_inventory(app, demo_fleet)
    return build_world(app, TEST_RUNBOOKS)


@pytest.fixture
def game_world(app, demo_fleet):
    """An engine with the shipped runbooks (game-update) over the demo fleet."""
    import_demo_inventory(app, demo_fleet)
    return build_world(app, PROJECT / "runbooks")


def output_lines(events: list[dict], host: str, step: str) -> list[str]:
    return [line for e in events if e["type"] == "output" and e["host"] == host
            and e["data"]["step"] == step for line in e["data"]["lines"]]


def processes_on(demo_fleet, host_name: str) -> list[str]:
    host = next(h for h in demo_fleet["hosts"] if h["name"] == host_name)
    return remote_commands(host["address"], host["port"], "demo", demo_fleet["client_key"],
                           demo_fleet["known_hosts"])


def test_cancel_stops_remote_commands_on_the_demo_fleet(demo_world, demo_fleet):
    job_id = demo_world.engine.start(
        demo_world.engine.plan("sleepy", {"seconds": NAP}, ["gs-02", "gs-03"]), None)
    demo_world.wait_for(job_id, lambda ev: sum(
        1 for e in ev if e["type"] == "output" and "napping" in e["data"]["lines"]) == 2)

    demo_world.engine.cancel(job_id)
    job = demo_world.wait_finished(job_id, timeout=30)

    assert job.status == "cancelled"
    assert {h.status for h in job.hosts} == {"cancelled"}
    assert f"sleep {NAP}" not in processes_on(demo_fleet, "gs-02")


def test_failed_deploy_rolls_back_only_that_server(game_world, demo_fleet):
    world = game_world
    marker = Path(demo_fleet["state_dir"]) / "hosts" / "gs-05" / "FAIL_DEPLOY"
    marker.touch()
    try:
        job = world.wait_finished(world.engine.start(world.engine.plan(
            "game-update", {"version": "2.7.1", "fast": "true"}, ["gs-04", "gs-05"]), None))
    finally:
        marker.unlink()

    by_name = {h.name: h for h in job.hosts}
    assert (by_name["gs-04"].status, by_name["gs-05"].status) == ("succeeded", "failed")
    assert (by_name["gs-05"].failed_step, by_name["gs-05"].exit_code) == ("deploy", 3)
    events = world.events(job.id)
    rollback = output_lines(events, "gs-05", "rollback")
    assert rollback[-2].startswith("rolled back: ")
    restored = rollback[-1]  # the rollback reports the version it went back to
    assert restored != "2.7.1" and restored.count(".") == 2
    assert [e["host"] for e in events if e["type"] == "step_started"
            and e["data"]["phase"] == "on_failure"] == ["gs-05"]
    finished = {e["host"]: e["data"] for e in events if e["type"] == "host_finished"}
    assert finished["gs-04"]["facts"] == {"version": "2.7.1"}
    assert finished["gs-05"]["facts"] == {"version": restored}
    assert finished["gs-05"]["on_failure"] == "succeeded"
    assert finished["gs-05"]["reason"].endswith(f"rolled back to {restored}")


def test_a_demo_deploy_streams_its_download_then_waits_for_the_game_server(game_world):
    world = game_world
    job = world.wait_finished(world.engine.start(
        world.engine.plan("game-update", {"version": "5.0.6"}, ["gs-06"]), None), timeout=180)

    events = world.events(job.id)
    download = output_lines(events, "gs-06", "download")
    progress = [PROGRESS.fullmatch(line) for line in download
                if line.startswith("downloading build")]
    start = output_lines(events, "gs-06", "start")
    start_seq = next(e["seq"] for e in events
                     if e["type"] == "step_started" and e["data"]["step"] == "start")
    last_download_seq = max(e["seq"] for e in events
                            if e["type"] == "output" and e["data"]["step"] == "download")
    assert job.status == "succeeded"
    assert any("throttled to" in line for line in download), download
    assert all(progress), download
    assert [int(m["percent"]) for m in progress] == list(range(10, 101, 10))
    assert {m["version"] for m in progress} == {"5.0.6"}
    assert all(float(m["rate"]) > 0 for m in progress)
    assert progress[-1]["done"] == progress[-1]["total"]
    assert last_download_seq < start_seq
    waiting = next(i for i, line in enumerate(start)
                   if line.startswith("waiting for the game server to answer on "))
    answered = next(i for i, line in enumerate(start)
                    if line.startswith("game server answering on "))
    assert waiting < answered
    assert "with version 5.0.6" in start[answered]
    facts = {e["host"]: e["data"].get("facts") for e in events if e["type"] == "host_finished"}
    assert facts["gs-06"] == {"version": "5.0.6"}


def test_a_fast_demo_deploy_copies_the_build_without_a_throttle(game_world):
    world = game_world
    job = world.wait_finished(world.engine.start(world.engine.plan(
        "game-update", {"version": "5.0.7", "fast": "true"}, ["gs-07"]), None))

    events = world.events(job.id)
    download = output_lines(events, "gs-07", "download")
    assert job.status == "succeeded"
    assert any("at full speed (no throttle)" in line for line in download), download
    assert not any("throttled to" in line for line in download)
    assert [int(m["percent"]) for line in download if (m := PROGRESS.fullmatch(line))] \
        == list(range(10, 101, 10))
