"""Rollouts shaped for game servers, in the engine over the in-memory fleet: wait steps
(probe until a match or a deadline), manual gates (pause, promote, abort, survive a
restart) and soak gates (wait, re-run the health steps). The real-SSH and browser sides
are in tests/demo/test_demo_fleet.py and tests/browser/test_ux_rollouts.py."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from models import Job, User
from tasks.engine import JobEngine
from tasks.errors import PatchbayError
from tasks.events.resume import read_progress
from tasks.planning.runbook_files import parse_runbook
from tasks.rollout import gate_run
from tasks.running import job_run
from tests.support.engine_world import EngineWorld, engine_database, engine_process
from tests.support.fake_transport import FakeFleet, Script, lines
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres  # `make test` runs these again on PostgreSQL
HOSTS = ["h1", "h2", "h3", "h4"]

ROLLOUT = parse_runbook("""
name: rollout
params:
  drain_for:
    type: integer
    default: 30
  on_timeout:
    pattern: '^(proceed|fail)$'
    default: proceed
steps:
  - name: drain
    wait:
      command: count-players --secret {{ vars.token }}
      until: '^0$'
      every: 0.2
      timeout: "{{ params.drain_for }}"
      on_timeout: proceed
  - name: deploy
    run: deploy-build
  - name: health
    health: true
    run: check-health
""", "rollout.yml")
STRICT = parse_runbook("""
name: strict
steps:
  - name: drain
    wait:
      command: count-players
      until: '^0$'
      every: 0.2
      timeout: 1
  - name: deploy
    run: deploy-build
""", "strict.yml")
PROBED = parse_runbook("""
name: probed
steps:
  - name: deploy
    run: deploy-build
  - name: report
    run: report-version
    capture: version
version_probe: read-version --root {{ vars.token }}
""", "probed.yml")


@pytest.fixture
def fleet():
    fleet = FakeFleet(kill_grace=0.2)
    fleet.script("count-players", Script(lines("stdout", "0")))
    fleet.script("check-health", Script(lines("stdout", "healthy")))
    fleet.script("read-version", Script(lines("stdout", "probing", "3.1.0")))
    fleet.script("report-version", Script(lines("stdout", "3.2.0")))
    yield fleet
    fleet.close()


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = engine_database(tmp_path, HOSTS)
    db = create_engine(url)
    with Session(db) as session:
        from models import Server
        for server in session.query(Server):
            server.vars = {"token": "s3cr3t-token"}
            server.facts = {}
        session.add(User(username="alice", password_hash="-", role="operator"))
        session.commit()
    db.dispose()
    return url


@pytest.fixture
def make_world(database, fleet, monkeypatch):
    """Engines on the test's database, each as its own "process"."""
    monkeypatch.setattr(job_run, "CANCEL_POLL_SECONDS", 0.1)
    monkeypatch.setattr(gate_run, "CANCEL_POLL_SECONDS", 0.1)
    built: list[tuple[JobEngine, Any]] = []

    def make(transport=None) -> EngineWorld:
        world, db = engine_process(
            database, {"rollout": ROLLOUT, "strict": STRICT, "probed": PROBED},
            transport or fleet.transport, kill_grace=0.2, reattach_timeout=2,
            flush_interval=0.02)
        built.append((world.engine, db))
        return world

    yield make
    for engine, db in built:
        for run in list(engine._running.values()):
            run.abandoned.set()
            run.finished.set()
        db.dispose()


@pytest.fixture
def world(make_world) -> EngineWorld:
    return make_world()


def start(world: EngineWorld, servers: list[str], runbook: str = "rollout",
          params: dict | None = None, **strategy: Any) -> int:
    plan = world.engine.plan(runbook, params or {}, servers, strategy=strategy or None)
    return world.engine.start(plan, None)


def of_type(events: list[dict], kind: str, host: str | None = None) -> list[dict]:
    return [e for e in events if e["type"] == kind and (host is None or e["host"] == host)]


def status_of(world: EngineWorld, job_id: int) -> str:
    with world.sessions() as session:
        return session.get(Job, job_id).status


def alice(world: EngineWorld) -> int:
    with world.sessions() as session:
        return session.query(User).filter_by(username="alice").one().id


def steps_started(events: list[dict], host: str) -> list[str]:
    return [e["data"]["step"] for e in of_type(events, "step_started", host)]


# -- wait steps -------------------------------------------------------------------------


def test_a_wait_step_probes_until_the_output_matches_then_the_steps_go_on(world, fleet):
    fleet.script("count-players", Script(lines("stdout", "players online:", "2")))
    job_id = start(world, ["h1"])
    # Held: two probes that do not match, and nothing after the wait has started.
    events = world.wait_for(job_id, lambda ev: len(of_type(ev, "wait_probe", "h1")) >= 2)
    assert steps_started(events, "h1") == ["drain"]
    fleet.script("count-players", Script(lines("stdout", "players online:", "0")))

    job = world.wait_finished(job_id, timeout=10)

    events = world.events(job_id)
    probes = [e["data"] for e in of_type(events, "wait_probe", "h1")]
    assert (job.status, steps_started(events, "h1")) == \
        ("succeeded", ["drain", "deploy", "health"])
    assert [p["attempt"] for p in probes] == list(range(1, len(probes) + 1))
    assert [p["matched"] for p in probes] == [False] * (len(probes) - 1) + [True]
    assert probes[0]["output"] == ["players online:", "2"]
    assert probes[-1]["output"] == ["players online:", "0"]
    assert all(0 < p["remaining"] <= 30 for p in probes)
    started = of_type(events, "step_started", "h1")[0]["data"]
    assert started["wait"]["until"] == "^0$" and started["wait"]["timeout"] == 30
    assert started["wait"]["deadline"] == pytest.approx(
        of_type(events, "step_started", "h1")[0]["ts"] + 30, abs=1)
    assert started["command"] == "count-players --secret s3cr3t-token"  # not secret here
    finished = of_type(events, "step_finished", "h1")[0]["data"]
    assert (finished["status"], finished["reason"]) == \
        ("ok", f"matched ^0$ after {len(probes)} probes")


def test_a_wait_that_times_out_goes_on_or_fails_as_its_step_says(world, fleet):
    fleet.script("count-players", Script(lines("stdout", "3")))

    proceeding = world.wait_finished(start(world, ["h1"], params={"drain_for": 1}), 15)
    failing = world.wait_finished(start(world, ["h2"], runbook="strict"), 15)

    events = world.events(proceeding.id)
    assert proceeding.status == "succeeded"
    assert steps_started(events, "h1") == ["drain", "deploy", "health"]
    assert of_type(events, "step_finished", "h1")[0]["data"]["reason"] == \
        "no probe matched ^0$ within 1 s; going on (on_timeout: proceed)"
    assert of_type(events, "wait_probe", "h1")[-1]["data"]["matched"] is False
    events = world.events(failing.id)
    assert (failing.status, failing.hosts[0].failed_step) == ("failed", "drain")
    assert failing.hosts[0].reason == "timed out: no probe matched ^0$ within 1 s"
    assert steps_started(events, "h2") == ["drain"]


def test_a_probe_that_fails_does_not_match_even_if_its_output_does(world, fleet):
    fleet.script("count-players", Script(lines("stdout", "0"), exit_code=1))

    job = world.wait_finished(start(world, ["h1"], params={"drain_for": 1}), 15)

    probes = [e["data"] for e in of_type(world.events(job.id), "wait_probe", "h1")]
    assert probes and all(not p["matched"] and p["exit_code"] == 1 for p in probes)


def test_a_wait_timeout_from_a_parameter_is_checked_at_plan_time(world):
    with pytest.raises(PatchbayError) as refused:
        world.engine.plan("rollout", {"drain_for": 0}, ["h1"])

    assert refused.value.field == "params.drain_for"
    assert "between 1 and 86400 seconds" in refused.value.message


def test_cancel_during_a_wait_stops_probing(world, fleet):
    fleet.script("count-players", Script(lines("stdout", "5")))
    job_id = start(world, ["h1"])
    world.wait_for(job_id, lambda ev: of_type(ev, "wait_probe", "h1"))

    world.engine.cancel(job_id)
    job = world.wait_finished(job_id, timeout=10)

    assert (job.status, job.hosts[0].status, job.hosts[0].failed_step) == \
        ("cancelled", "cancelled", "drain")


def test_a_restarted_console_goes_on_waiting_until_the_first_deadline(make_world, fleet):
    fleet.script("count-players", Script(lines("stdout", "4")))
    console = fleet.console()
    first = make_world(transport=console.transport)
    job_id = start(first, ["h1"])
    first.wait_for(job_id, lambda ev: len(of_type(ev, "wait_probe", "h1")) >= 2)
    first.engine._running[job_id].abandoned.set()  # the first console dies here
    first.wait_for(job_id, lambda ev: not first.engine.is_running_here(job_id))
    before = first.events(job_id)
    fleet.script("count-players", Script(lines("stdout", "0")))

    second = make_world()
    assert second.engine.resume_owned_jobs() == [job_id]
    job = second.wait_finished(job_id, timeout=10)

    events = second.events(job_id)
    attempts = [e["data"]["attempt"] for e in of_type(events, "wait_probe", "h1")]
    assert job.status == "succeeded"
    assert attempts == list(range(1, len(attempts) + 1)), "probes count on after a restart"
    assert len(attempts) > len(of_type(before, "wait_probe", "h1"))
    assert steps_started(events, "h1") == ["drain", "deploy", "health"]


# -- manual gates -----------------------------------------------------------------------


def paused_after_canary(world: EngineWorld, fleet) -> int:
    job_id = start(world, HOSTS[:3], batches=[1], gate="manual")
    world.wait_for(job_id, lambda ev: of_type(ev, "job_paused"))
    wait_until(lambda: status_of(world, job_id) == "paused", 5, "job paused")
    return job_id


def test_a_manual_gate_pauses_after_the_canary_until_promoted(world, fleet):
    job_id = paused_after_canary(world, fleet)
    events = world.events(job_id)
    assert [e["data"] for e in of_type(events, "job_paused")] == \
        [{"batch": 0, "reason": "gate", "next_batch": 1}]
    assert [e["host"] for e in of_type(events, "host_started")] == ["h1"]

    answer = world.engine.decide_gate(job_id, "promote", alice(world))
    job = world.wait_finished(job_id, timeout=10)

    events = world.events(job_id)
    assert answer["message"] == f"promoting job #{job_id}"
    assert (job.status, [h.status for h in job.hosts]) == ("succeeded", ["succeeded"] * 3)
    assert [e["data"] for e in of_type(events, "job_resumed")] == [{"by": "alice", "batch": 1}]
    kinds = [e["type"] for e in events]
    assert kinds.index("job_resumed") < kinds.index("batch_started", kinds.index("job_paused"))
    with world.sessions() as session:
        assert session.get(Job, job_id).gate_request is None


def test_abort_at_a_gate_skips_the_rest_and_cancels_the_job(world, fleet):
    job_id = paused_after_canary(world, fleet)

    world.engine.decide_gate(job_id, "abort", alice(world))
    job = world.wait_finished(job_id, timeout=10)

    events = world.events(job_id)
    assert (job.status, [h.status for h in job.hosts]) == \
        ("cancelled", ["succeeded", "skipped", "skipped"])
    assert job.hosts[1].reason == "not started: aborted at the gate by alice"
    assert [e["data"] for e in of_type(events, "job_aborted")] == [{"by": "alice", "batch": 0}]
    assert events[-1]["data"]["reason"] == "aborted at the gate by alice"
    assert of_type(events, "job_resumed") == []


def test_cancel_while_paused_cancels_the_rest(world, fleet):
    job_id = paused_after_canary(world, fleet)

    assert world.engine.cancel(job_id)["cancelled"] is True
    job = world.wait_finished(job_id, timeout=10)

    assert (job.status, [h.status for h in job.hosts]) == \
        ("cancelled", ["succeeded", "cancelled", "cancelled"])


def test_a_gate_decision_is_refused_unless_the_job_waits_at_a_gate(world, fleet):
    job_id = paused_after_canary(world, fleet)
    world.engine.decide_gate(job_id, "promote", alice(world))

    with pytest.raises(PatchbayError) as twice:
        world.engine.decide_gate(job_id, "abort", alice(world))
    world.wait_finished(job_id, timeout=10)
    with pytest.raises(PatchbayError) as finished:
        world.engine.decide_gate(job_id, "promote", alice(world))
    with pytest.raises(PatchbayError) as missing:
        world.engine.decide_gate(999, "promote", alice(world))

    assert (twice.value.code, twice.value.field) == ("invalid", "job_id")
    assert finished.value.message == \
        f"job #{job_id} is not waiting at a gate (it is succeeded)"
    assert missing.value.code == "not_found"


def test_a_paused_job_survives_a_console_restart_and_is_promoted_after_it(make_world, fleet):
    first = make_world()
    job_id = paused_after_canary(first, fleet)
    first.engine._running[job_id].abandoned.set()  # the first console dies while paused
    first.wait_for(job_id, lambda ev: not first.engine.is_running_here(job_id))

    second = make_world()
    assert second.engine.resume_owned_jobs() == [job_id]
    second.wait_for(job_id, lambda ev: of_type(ev, "job_recovered"))
    assert status_of(second, job_id) == "paused"
    second.engine.decide_gate(job_id, "promote", alice(second))
    job = second.wait_finished(job_id, timeout=10)

    events = second.events(job_id)
    assert job.status == "succeeded"
    assert len(of_type(events, "job_paused")) == 1, "the resumed job did not pause again"
    assert [e["data"]["by"] for e in of_type(events, "job_resumed")] == ["alice"]
    assert [e["host"] for e in of_type(events, "host_started")] == ["h1", "h2", "h3"]


def test_every_batch_but_the_last_has_its_gate(world, fleet):
    job_id = start(world, HOSTS, batches=[1, 1], gate="manual")  # batches of 1, 1 and 2
    for batch in (0, 1):
        world.wait_for(job_id, lambda ev, b=batch: len(of_type(ev, "job_paused")) > b)
        wait_until(lambda: status_of(world, job_id) == "paused", 5, "paused")
        world.engine.decide_gate(job_id, "promote", alice(world))

    job = world.wait_finished(job_id, timeout=10)

    events = world.events(job_id)
    assert job.status == "succeeded"
    assert [e["data"]["batch"] for e in of_type(events, "job_paused")] == [0, 1]
    assert [e["data"]["batch"] for e in of_type(events, "job_resumed")] == [1, 2]


# -- soak gates -------------------------------------------------------------------------


def test_a_soak_gate_rechecks_health_then_goes_on(world, fleet):
    job = world.wait_finished(start(world, HOSTS[:3], batches=[1], gate={"soak": 0.3}), 15)

    events = world.events(job.id)
    health = [e for e in of_type(events, "step_started", "h1")
              if e["data"]["phase"] == "health"]
    assert job.status == "succeeded"
    assert [e["data"]["batch"] for e in of_type(events, "soak_started")] == [0]
    assert [e["data"] for e in of_type(events, "soak_finished")] == \
        [{"batch": 0, "passed": True, "failed": []}]
    assert [e["data"]["step"] for e in health] == ["health"]
    kinds = [e["type"] for e in events]
    assert kinds.index("soak_finished") < kinds.index("batch_started", kinds.index("soak_started"))
    assert len([s for s in fleet.started("h1") if "check-health" in s]) == 2


def test_a_soak_that_finds_the_batch_unhealthy_stops_the_rollout(world, fleet):
    release = threading.Event()
    fleet.script("check-health", Script([release, *lines("stdout", "healthy")]), host="h1")
    job_id = start(world, HOSTS[:3], batches=[1], gate={"soak": 0.2})
    wait_until(lambda: any("check-health" in s for s in fleet.started("h1")), 5, "health")
    # The first health check passes; the soak's second one finds h1 down.
    fleet.script("check-health", Script(lines("stderr", "no answer"), exit_code=1), host="h1")
    release.set()

    job = world.wait_finished(job_id, timeout=15)

    events = world.events(job_id)
    reason = "the canary failed its health check after a 0.2 s soak (h1)"
    assert (job.status, [h.status for h in job.hosts]) == \
        ("failed", ["succeeded", "skipped", "skipped"])
    assert job.hosts[1].reason == f"not started: {reason}"
    assert [e["data"] for e in of_type(events, "soak_finished")] == \
        [{"batch": 0, "passed": False, "failed": ["h1"], "reason": reason}]
    assert events[-1]["data"]["reason"] == reason


def test_a_soak_gate_needs_a_runbook_with_health_steps(world):
    with pytest.raises(PatchbayError) as refused:
        world.engine.plan("strict", {}, ["h1"], strategy={"gate": {"soak": 5}})

    assert refused.value.field == "strategy.gate"


# -- version probes ---------------------------------------------------------------------


def finished_data(events: list[dict], host: str) -> dict:
    return of_type(events, "host_finished", host)[0]["data"]


def test_a_server_whose_steps_did_not_report_its_build_is_probed_for_it(world, fleet):
    fleet.script("deploy-build", Script(lines("stderr", "disk full"), exit_code=2), host="h2")
    reported = world.wait_finished(start(world, ["h1"], runbook="probed"), 10)
    failed = world.wait_finished(start(world, ["h2"], runbook="probed"), 10)

    events = world.events(reported.id)
    assert fleet.started("h1") == ["deploy-build", "report-version"], "reported: no probe"
    assert finished_data(events, "h1")["facts"] == {"version": "3.2.0"}
    events = world.events(failed.id)
    probe = [e["data"] for e in of_type(events, "step_started", "h2")][-1]
    assert (probe["step"], probe["phase"], probe["command"]) == \
        ("version probe", "probe", "read-version --root s3cr3t-token")
    assert fleet.started("h2") == ["deploy-build", "read-version --root s3cr3t-token"]
    assert (failed.hosts[0].status, failed.hosts[0].failed_step) == ("failed", "deploy")
    assert finished_data(events, "h2")["facts"] == {"version": "3.1.0"}
    assert finished_data(events, "h2")["version_state"] == "verified"


def test_a_cancelled_server_is_still_probed_for_its_build(world, fleet):
    hold = threading.Event()
    fleet.script("deploy-build", Script([*lines("stdout", "deploying"), hold]))
    job_id = start(world, ["h1"], runbook="probed")
    world.wait_for(job_id, lambda ev: of_type(ev, "output", "h1"))

    world.engine.cancel(job_id)
    job = world.wait_finished(job_id, timeout=10)

    events = world.events(job_id)
    assert job.hosts[0].status == "cancelled"
    assert [e["data"]["phase"] for e in of_type(events, "step_finished", "h1")] == \
        ["steps", "probe"]
    assert finished_data(events, "h1")["facts"] == {"version": "3.1.0"}
    assert finished_data(events, "h1")["version_state"] == "verified"


def test_a_restart_during_the_version_probe_reads_it_on(make_world, fleet):
    fleet.script("deploy-build", Script(lines("stderr", "boom"), exit_code=1))
    release = threading.Event()
    fleet.script("read-version", Script([*lines("stdout", "probing"), release,
                                         *lines("stdout", "3.0.9")]))
    console = fleet.console()
    first = make_world(transport=console.transport)
    job_id = start(first, ["h1"], runbook="probed")
    first.wait_for(job_id, lambda ev: any(e["data"].get("lines") == ["probing"]
                                          for e in of_type(ev, "output", "h1")))
    console.crash()
    release.set()

    second = make_world()
    assert second.engine.resume_owned_jobs() == [job_id]
    job = second.wait_finished(job_id, timeout=10)

    events = second.events(job_id)
    assert job.hosts[0].status == "failed"
    assert len([s for s in fleet.started("h1") if s.startswith("read-version")]) == 1
    assert finished_data(events, "h1")["facts"] == {"version": "3.0.9"}


# -- the log says where the gates stand -------------------------------------------------


def test_progress_reads_each_gate_and_ignores_soak_health_checks():
    events = [
        {"type": "job_started", "host": None, "data": {}},
        {"type": "host_started", "host": "h1", "data": {}},
        {"type": "host_finished", "host": "h1", "data": {"status": "succeeded"}},
        {"type": "job_paused", "host": None, "data": {"batch": 0, "reason": "gate"}},
        {"type": "job_resumed", "host": None, "data": {"batch": 1, "by": "al"}},
        {"type": "host_started", "host": "h2", "data": {}},
        {"type": "host_finished", "host": "h2", "data": {"status": "succeeded"}},
        {"type": "soak_started", "host": None, "data": {"batch": 1, "until": 5.0}},
        {"type": "step_started", "host": "h2", "ts": 1,
         "data": {"step": "health", "index": 2, "phase": "health"}},
        {"type": "job_paused", "host": None, "data": {"batch": 2, "reason": "gate"}},
    ]

    progress = read_progress(events, ["h1", "h2"], {}, {})

    assert {b: g["state"] for b, g in progress.gates.items()} == \
        {0: "promoted", 1: "soak_started", 2: "paused"}
    assert progress.gates[0]["by"] == "al"
    assert progress.hosts["h2"].state == "finished"
