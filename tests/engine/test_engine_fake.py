"""The job engine over the in-memory fleet of ``tests/support/fake_transport.py``: no sshd, no
Flask, a real database (a SQLite file; PostgreSQL in `make test-postgres`). One story per
test: rollout rules, cancel, timeouts, the output limit, on_failure, SSH drops, and a
console restart resumed from the event log.
Then the pure rules underneath (``tasks.events.resume``, ``tasks.rollout.strategy``)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.engine import JobEngine
from tasks.events.resume import ON_FAILURE, STEPS, StepPosition, read_progress
from tasks.planning.runbook_files import parse_runbook
from tasks.rollout.strategy import (
    CANARY_FAILED,
    canary_stop,
    count_statuses,
    failure_stop,
    final_status,
    not_started_outcome,
    split_batches,
)
from tasks.running import server_run
from tests.support.engine_world import EngineWorld, engine_database, engine_process
from tests.support.fake_transport import FakeFleet, Script, lines
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres  # `make test` runs these again on PostgreSQL
PROJECT = Path(__file__).resolve().parents[2]
HOSTS = [f"h{i}" for i in range(1, 7)]

DEPLOY = parse_runbook("""
name: deploy
params:
  build:
    pattern: '^[0-9.]{1,20}$'
steps:
  - name: fetch
    run: fetch-build {{ params.build }}
  - name: install
    run: install-build {{ params.build }}
  - name: report
    run: report-version
    capture: version
on_failure:
  - name: roll back
    run: roll-back
""", "deploy.yml")
FETCH, INSTALL, REPORT, ROLL_BACK = ("fetch-build 1.2", "install-build 1.2",
                                     "report-version", "roll-back")
ALL_STEPS = [FETCH, INSTALL, REPORT]


# -- the world: a database, an engine, the fake fleet -----------------------------------


@pytest.fixture
def fleet():
    fleet = FakeFleet(kill_grace=0.2)
    fleet.script("report-version", Script(lines("stdout", "2.0.0")))
    yield fleet
    fleet.close()


@pytest.fixture
def database(tmp_path: Path) -> str:
    return engine_database(tmp_path, HOSTS)


@pytest.fixture
def make_world(database, fleet, monkeypatch):
    """Builds engines on the test's database, each as its own "process" (its own
    SQLAlchemy engine and event log): ``make_world(transport=..., **settings)``."""
    monkeypatch.setattr(server_run, "RECONNECT_FIRST_DELAY", 0.05)  # backoff starts sooner
    built: list[tuple[JobEngine, Any]] = []

    def make(transport=None, **settings: Any) -> EngineWorld:
        world, db = engine_process(database, {"deploy": DEPLOY}, transport or fleet.transport,
                                   **{"kill_grace": 0.2, "reattach_timeout": 2,
                                      "flush_interval": 0.02, **settings})
        built.append((world.engine, db))
        return world

    yield make
    for engine, db in built:
        for run in list(engine._running.values()):
            run.finished.set()  # ends the cancel poller of a run frozen by a "crash"
        db.dispose()


@pytest.fixture
def world(make_world) -> EngineWorld:
    return make_world()


def start(world: EngineWorld, servers: list[str], **strategy: Any) -> int:
    plan = world.engine.plan("deploy", {"build": "1.2"}, servers, strategy=strategy or None)
    return world.engine.start(plan, None)


def output_lines(events: list[dict], host: str, stream: str = "stdout",
                 step: str | None = None) -> list[str]:
    return [line for e in events if e["type"] == "output" and e["host"] == host
            and e["data"]["stream"] == stream and step in (None, e["data"]["step"])
            for line in e["data"]["lines"]]


def of_type(events: list[dict], kind: str, host: str | None = None) -> list[dict]:
    return [e for e in events if e["type"] == kind and (host is None or e["host"] == host)]


def printed(*expected: tuple[str, str]) -> Callable[[list[dict]], bool]:
    """Whether the log holds each ``(host, line)`` of stdout."""
    return lambda events: all(line in output_lines(events, host) for host, line in expected)


def assert_gap_free(world: EngineWorld, job_id: int, events: list[dict]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["seq"] for e in world.published if e["job_id"] == job_id] == \
        [e["seq"] for e in events]


# -- the boundary ---------------------------------------------------------------------


def test_the_engine_and_the_fake_import_without_flask():
    code = ("import tasks.engine, tests.support.fake_transport, models; import sys; "
            "assert 'flask' not in sys.modules, sorted(m for m in sys.modules "
            "if m.startswith('flask'))")

    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr


# -- rollouts -------------------------------------------------------------------------


def test_every_host_succeeds_and_every_line_arrives_once_in_order(world, fleet):
    fleet.script("fetch-build", Script([
        ("stdout", "fetch: 10%\nfetch: 5"), 0.01, ("stdout", "0%\n"),
        ("stderr", "warn: slow mirror\n"),
        ("stdout", b"caf\xc3"), ("stdout", b"\xa9 ok\n"),  # a character cut in two
        ("stdout", "done"),  # no newline at the end
    ]))
    fleet.script("install-build", Script(lines("stdout", *(f"install {i}"
                                                           for i in range(1, 31)))))
    hosts = HOSTS[:4]

    job = world.wait_finished(start(world, hosts), timeout=10)

    events = world.events(job.id)
    assert (job.status, {h.status for h in job.hosts}) == ("succeeded", {"succeeded"})
    assert_gap_free(world, job.id, events)
    assert events[-1]["data"]["counts"] == {"succeeded": 4}
    for host in hosts:
        assert output_lines(events, host, step="fetch") == \
            ["fetch: 10%", "fetch: 50%", "café ok", "done"]
        assert output_lines(events, host, "stderr") == ["warn: slow mirror"]
        assert output_lines(events, host, step="install") == \
            [f"install {i}" for i in range(1, 31)]
        fetch_out = [e["data"] for e in of_type(events, "output", host)
                     if e["data"]["step"] == "fetch" and e["data"]["stream"] == "stdout"]
        assert fetch_out[-1]["offset"] == len(fleet.step(host, "fetch-build").out)
        assert of_type(events, "host_finished", host)[0]["data"]["facts"] == \
            {"version": "2.0.0"}
        assert fleet.started(host) == ALL_STEPS
        assert [c[2] for c in fleet.calls_of("clean", host)] == \
            [fleet.step(host, "fetch").path.rsplit("/", 1)[0]]
        assert fleet.servers[host].runs == {}
    assert len(of_type(events, "output")) < 4 * 10, "output is coalesced, not per line"


def test_the_starter_is_told_the_job_id_before_any_event_is_published(world, fleet):
    """``on_recorded`` is where a starting socket joins the job's room: nothing of the
    job may be published before it (the room is the only way its events reach it)."""
    told: list[tuple[int, int]] = []
    plan = world.engine.plan("deploy", {"build": "1.2"}, HOSTS[:3])

    job_id = world.engine.start(plan, None, on_recorded=lambda recorded: told.append(
        (recorded, len(world.published))))
    job = world.wait_finished(job_id, timeout=10)

    assert told == [(job_id, 0)]
    assert job.status == "succeeded"
    assert [e["seq"] for e in world.published if e["job_id"] == job_id][:1] == [1]


def test_a_failed_canary_batch_skips_the_later_batches(world, fleet):
    fleet.script("install-build", Script(lines("stderr", "disk full"), exit_code=3),
                 host="h1")

    job = world.wait_finished(start(world, HOSTS[:4], batches=[1]), timeout=10)

    finished = world.events(job.id)[-1]["data"]
    assert (job.status, finished["reason"]) == ("failed", CANARY_FAILED)
    assert [(h.name, h.status) for h in job.hosts] == \
        [("h1", "failed"), ("h2", "skipped"), ("h3", "skipped"), ("h4", "skipped")]
    assert job.hosts[1].reason == f"not started: {CANARY_FAILED}"
    assert [h.batch for h in job.hosts] == [0, 1, 1, 1]
    assert fleet.started("h1") == [FETCH, INSTALL, ROLL_BACK]
    assert [fleet.started(h) for h in HOSTS[1:4]] == [[], [], []]


def test_max_failures_stops_taking_new_servers(world, fleet):
    for host in ("h1", "h2", "h3"):
        fleet.script("fetch-build", Script(exit_code=1), host=host)

    job = world.wait_finished(start(world, HOSTS, parallel=1, max_failures=2), timeout=10)

    assert [h.status for h in job.hosts] == ["failed", "failed"] + ["skipped"] * 4
    assert world.events(job.id)[-1]["data"]["reason"] == "stopped after 2 failures"
    assert fleet.started("h3") == []


def test_no_more_steps_run_at_once_than_parallel_allows(world, fleet):
    gate = threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "waiting"), gate]))

    job_id = start(world, HOSTS, parallel=2)
    wait_until(lambda: fleet.running_now == 2, 5, "two steps running")
    gate.set()
    job = world.wait_finished(job_id, timeout=10)

    assert job.status == "succeeded"
    assert fleet.peak_running == 2
    assert sum(len(fleet.started(h)) for h in HOSTS) == 6 * 3


# -- stopping a step ------------------------------------------------------------------


def test_cancel_stops_running_steps_and_cancels_the_servers_not_started(world, fleet):
    never = threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), never]), host="h1")
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), never],
                                       ignore_term=True), host="h2")
    job_id = start(world, HOSTS[:3], parallel=2)
    world.wait_for(job_id, lambda ev: len(of_type(ev, "output")) == 2, timeout=5)

    ack = world.engine.cancel(job_id)
    job = world.wait_finished(job_id, timeout=10)

    assert ack["cancelled"] is True
    assert job.status == "cancelled"
    by_name = {h.name: h for h in job.hosts}
    assert [by_name[h].status for h in ("h1", "h2", "h3")] == ["cancelled"] * 3
    assert by_name["h1"].reason == by_name["h2"].reason == "stopped: job cancelled"
    assert by_name["h3"].reason == "job cancelled before this server started"
    assert fleet.step("h1", "fetch").signals == ["TERM"]
    assert fleet.step("h2", "fetch").signals == ["TERM", "KILL"]  # it ignored TERM
    assert not fleet.step("h1", "fetch").running and not fleet.step("h2", "fetch").running
    assert fleet.calls_of("connect", "h3") == []
    assert ROLL_BACK not in fleet.started("h1") + fleet.started("h2")
    assert world.engine.cancel(job_id)["cancelled"] is False


def test_a_step_past_its_timeout_is_stopped_and_fails_its_server(world, fleet):
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), threading.Event()]))

    job = world.wait_finished(start(world, ["h1"], timeout=0.3), timeout=10)

    host = job.hosts[0]
    assert (job.status, host.status, host.failed_step) == ("failed", "failed", "fetch")
    assert host.reason == "timed out after 0.3 s"
    assert fleet.step("h1", "fetch").signals == ["TERM"]
    assert fleet.started("h1") == [FETCH, ROLL_BACK]


def test_a_step_printing_past_the_output_limit_is_stopped(make_world, fleet):
    world = make_world(max_step_output=1000)
    fleet.script("fetch-build", Script([*lines("stdout", *("x" * 49 for _ in range(40))),
                                        threading.Event()]))

    job = world.wait_finished(start(world, ["h1"]), timeout=10)

    host = job.hosts[0]
    assert (host.status, host.failed_step) == ("failed", "fetch")
    assert "PATCHBAY_MAX_STEP_OUTPUT" in host.reason
    assert fleet.step("h1", "fetch").signals == ["TERM"]


# -- on_failure -----------------------------------------------------------------------


def test_on_failure_runs_after_a_failing_step_on_that_server_only(world, fleet):
    fleet.script("install-build", Script(lines("stderr", "disk full"), exit_code=3),
                 host="h1")
    fleet.script("roll-back", Script(lines("stdout", "rolled back")))

    job = world.wait_finished(start(world, ["h1", "h2"]), timeout=10)

    events = world.events(job.id)
    h1, h2 = job.hosts
    assert (job.status, h1.status, h2.status) == ("failed", "failed", "succeeded")
    assert (h1.failed_step, h1.exit_code, h1.reason) == \
        ("install", 3, "step 'install' exited with code 3")
    assert fleet.started("h1") == [FETCH, INSTALL, ROLL_BACK]
    assert fleet.started("h2") == ALL_STEPS
    assert [e["host"] for e in of_type(events, "step_started")
            if e["data"]["phase"] == "on_failure"] == ["h1"]
    assert output_lines(events, "h1", step="roll back") == ["rolled back"]


def test_a_failing_on_failure_step_is_named_in_the_reason(world, fleet):
    fleet.script("install-build", Script(exit_code=3))
    fleet.script("roll-back", Script(exit_code=9))

    job = world.wait_finished(start(world, ["h1"]), timeout=10)

    assert job.hosts[0].reason == \
        "step 'install' exited with code 3; on_failure step 'roll back' also failed"


# -- connections ----------------------------------------------------------------------


def test_a_refused_connection_fails_only_that_server(world, fleet):
    fleet.refuse("h1")

    job = world.wait_finished(start(world, ["h1", "h2"]), timeout=10)

    h1, h2 = job.hosts
    assert (h1.status, h1.failed_step, h1.reason) == \
        ("failed", "connect", "connection refused by 10.0.0.1:22")
    assert h2.status == "succeeded"


def test_a_step_starts_on_its_server_only_once_its_step_started_is_stored(make_world,
                                                                          fleet):
    """A console dying between starting a step and storing its ``step_started`` would
    leave a log saying the step never started, and the console resuming the job would
    start it a second time, alongside the first (``make chaos`` found a step running
    twice on four servers after a node's kill -9)."""
    stored_at_start: list[tuple[str, int, int]] = []
    worlds: list[EngineWorld] = []

    def transport(target):
        session = fleet.transport(target)
        start_step = session.start_step

        def start_if_stored(where, *args, **kwargs):
            starts = 1 + sum(1 for row in stored_at_start if row[0] == target.name)
            stored = sum(1 for event in worlds[0].events(job_id)
                         if event["type"] == "step_started" and event["host"] == target.name)
            stored_at_start.append((target.name, starts, stored))
            return start_step(where, *args, **kwargs)

        session.start_step = start_if_stored
        return session

    worlds.append(make_world(transport=transport))
    job_id = start(worlds[0], HOSTS[:2])
    job = worlds[0].wait_finished(job_id, timeout=10)

    assert job.status == "succeeded"
    assert len(stored_at_start) == 2 * len(ALL_STEPS)
    assert [(host, starts) for host, starts, _ in stored_at_start] == \
        [(host, stored) for host, _, stored in stored_at_start]


def test_a_dropped_connection_is_resumed_at_the_next_byte(make_world, fleet):
    world = make_world(reattach_timeout=5)
    printed_while_away, finish = threading.Event(), threading.Event()
    fleet.script("fetch-build", Script([
        *lines("stdout", "line 1", "line 2", "line 3", "line 4"),
        ("stdout", "line 5 par"),  # a partial line: not handed on before the drop
        printed_while_away,
        ("stdout", "tial\n"), *lines("stdout", "line 6", "line 7", "line 8"),
        finish,
        *lines("stdout", "line 9", "line 10"),
    ]))
    job_id = start(world, ["h1"])
    world.wait_for(job_id, lambda ev: "line 4" in output_lines(ev, "h1"), timeout=5)
    step = fleet.step("h1", "fetch")

    back_online = threading.Event()
    fleet.drop("h1", reconnect=back_online)
    world.wait_for(job_id, lambda ev: of_type(ev, "host_reconnecting"), timeout=5)
    printed_while_away.set()
    wait_until(lambda: b"line 8" in step.out, 5, "output written while disconnected")
    back_online.set()
    world.wait_for(job_id, lambda ev: "line 8" in output_lines(ev, "h1"), timeout=5)
    finish.set()
    job = world.wait_finished(job_id, timeout=10)

    events = world.events(job_id)
    assert (job.status, job.hosts[0].status) == ("succeeded", "succeeded")
    assert output_lines(events, "h1", step="fetch") == \
        ["line 1", "line 2", "line 3", "line 4", "line 5 partial",
         "line 6", "line 7", "line 8", "line 9", "line 10"]
    assert len(of_type(events, "host_reconnecting", "h1")) == 1
    assert len(of_type(events, "host_reconnected", "h1")) == 1
    attach = fleet.calls_of("attach", "h1")
    assert [call[3]["stdout"] for call in attach] == \
        [len(b"line 1\nline 2\nline 3\nline 4\n")]
    assert fleet.started("h1") == ALL_STEPS  # fetch was never started again
    assert step.signals == []
    assert_gap_free(world, job_id, events)


def test_a_server_unreachable_past_the_reattach_timeout_is_lost_not_killed(
        make_world, fleet):
    world = make_world(reattach_timeout=1)
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), threading.Event()]))
    job_id = start(world, ["h1"])
    world.wait_for(job_id, lambda ev: "fetching" in output_lines(ev, "h1"), timeout=5)

    fleet.drop("h1", reconnect=False)
    job = world.wait_finished(job_id, timeout=10)

    host = job.hosts[0]
    events = world.events(job_id)
    assert (job.status, host.status, host.failed_step) == ("failed", "failed", "fetch")
    assert host.reason.startswith("lost: no SSH connection to h1 for 1 s")
    assert "'fetch' was left running on the server" in host.reason
    step = fleet.step("h1", "fetch")
    assert step.running and step.signals == [] and fleet.calls_of("signal") == []
    assert len(fleet.calls_of("connect", "h1")) > 1  # it did try again
    assert of_type(events, "host_reconnecting", "h1")
    assert of_type(events, "host_reconnected") == []
    assert fleet.calls_of("clean", "h1") == []  # its run directory is kept
    assert fleet.started("h1") == [FETCH]  # no on_failure for a lost step


def test_a_cancel_while_reconnecting_gives_up_and_leaves_the_step_alone(make_world, fleet):
    world = make_world(reattach_timeout=5)
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), threading.Event()]))
    job_id = start(world, ["h1", "h2"], parallel=1)
    world.wait_for(job_id, printed(("h1", "fetching")), timeout=5)
    fleet.drop("h1", reconnect=False)
    world.wait_for(job_id, lambda ev: of_type(ev, "host_reconnecting"), timeout=5)

    world.engine.cancel(job_id)
    job = world.wait_finished(job_id, timeout=5)  # well before the reattach timeout

    h1, h2 = job.hosts
    assert (job.status, h1.status, h2.status) == ("cancelled", "cancelled", "cancelled")
    assert h1.reason.startswith("lost: job cancelled while h1 was unreachable; step 'fetch' "
                                "was left running on the server")
    assert fleet.step("h1", "fetch").running and fleet.calls_of("signal") == []


# -- a console restart: resume from the log ---------------------------------------------


def crash_mid_job(make_world, fleet, servers: list[str], ready: Callable[[list], bool],
                  **strategy: Any) -> tuple[int, list[dict]]:
    """Start a job on a console that dies once ``ready(its events)``; returns the job
    and the log it left."""
    console = fleet.console()
    first = make_world(transport=console.transport)
    job_id = start(first, servers, **strategy)
    first.wait_for(job_id, ready, timeout=5)
    console.crash()
    assert first.engine.events.wait_written(5)
    return job_id, first.events(job_id)


def test_a_restarted_console_resumes_steps_servers_and_batches(make_world, fleet):
    h1_more, h1_finish, h2_finish = threading.Event(), threading.Event(), threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "h1 fetch 1", "h1 fetch 2"),
                                        h1_more, *lines("stdout", "h1 fetch 3", "h1 fetch 4"),
                                        h1_finish, *lines("stdout", "h1 fetch 5")]),
                 host="h1")
    fleet.script("fetch-build", Script([*lines("stdout", "h2 fetch 1"), h2_finish,
                                        *lines("stdout", "h2 fetch 2")]), host="h2")
    # Batches [h1 h2 h3] [h4], two at a time: h3 and the second batch are not reached.
    job_id, before = crash_mid_job(make_world, fleet, HOSTS[:4],
                                   printed(("h1", "h1 fetch 2"), ("h2", "h2 fetch 1")),
                                   parallel=2, batches=[3])
    assert [e["host"] for e in of_type(before, "host_started")] == ["h1", "h2"]
    assert of_type(before, "host_finished") == []
    # While no console runs: h1 prints on, h2 ends well.
    h1_more.set()
    h2_finish.set()
    wait_until(lambda: b"h1 fetch 4" in fleet.step("h1", "fetch").out, 5, "h1 printed")
    wait_until(lambda: not fleet.step("h2", "fetch").running, 5, "h2 ended")

    second = make_world()
    assert second.engine.resume_owned_jobs() == [job_id]
    wait_until(lambda: fleet.calls_of("attach", "h1"), 5, "h1 re-attached")
    h1_finish.set()
    job = second.wait_finished(job_id, timeout=10)

    events = second.events(job_id)
    after = events[len(before):]
    assert events[:len(before)] == before
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["seq"] for e in second.published] == [e["seq"] for e in after]
    assert after[0]["type"] == "job_recovered"
    assert after[0]["data"]["servers"] == ["h1", "h2"]
    assert (job.status, [h.status for h in job.hosts]) == ("succeeded", ["succeeded"] * 4)
    # h1's step was re-attached where the log stops: every line once, in order.
    assert output_lines(events, "h1", step="fetch") == [f"h1 fetch {i}" for i in range(1, 6)]
    assert [c[3] for c in fleet.calls_of("attach", "h1")] == \
        [{"stdout": len(b"h1 fetch 1\nh1 fetch 2\n")}]
    # h2's step ended meanwhile: collected, then its next steps ran.
    assert output_lines(events, "h2", step="fetch") == ["h2 fetch 1", "h2 fetch 2"]
    for host in ("h1", "h2", "h3", "h4"):
        assert fleet.started(host) == ALL_STEPS, host  # no step ran twice
    assert [e["data"]["step"] for e in of_type(after, "step_started", "h1")] == \
        ["install", "report"]
    assert [e["host"] for e in of_type(after, "host_started")] == ["h3", "h4"]
    assert [e["data"]["batch"] for e in of_type(events, "batch_started")] == [0, 1]
    assert of_type(after, "job_started") == []


def test_a_step_that_failed_while_the_console_was_down_runs_on_failure(make_world, fleet):
    finish = threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), finish,
                                        *lines("stderr", "checksum mismatch")], exit_code=4))
    job_id, before = crash_mid_job(make_world, fleet, ["h1"], printed(("h1", "fetching")))
    finish.set()
    wait_until(lambda: not fleet.step("h1", "fetch").running, 5, "the step ended")

    second = make_world()
    second.engine.resume_owned_jobs()
    job = second.wait_finished(job_id, timeout=10)

    events = second.events(job_id)
    host = job.hosts[0]
    assert (job.status, host.status, host.failed_step, host.exit_code) == \
        ("failed", "failed", "fetch", 4)
    assert host.reason == "step 'fetch' exited with code 4"
    assert output_lines(events, "h1", "stderr") == ["checksum mismatch"]
    assert fleet.started("h1") == [FETCH, ROLL_BACK]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert of_type(events, "job_recovered")[0]["seq"] == len(before) + 1


def test_a_cancel_requested_while_the_console_was_down_stops_the_running_step(
        make_world, fleet):
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), threading.Event()]))
    job_id, _ = crash_mid_job(make_world, fleet, ["h1"], printed(("h1", "fetching")))

    second = make_world()
    assert second.engine.cancel(job_id)["cancelled"] is True  # no console runs it
    second.engine.resume_owned_jobs()
    job = second.wait_finished(job_id, timeout=10)

    host = job.hosts[0]
    assert job.status == "cancelled"
    assert fleet.step("h1", "fetch").signals == ["TERM"]
    assert (host.status, host.reason) == ("cancelled", "stopped: job cancelled")


def test_a_server_under_way_when_max_failures_was_reached_goes_on_after_a_restart(
        make_world, fleet):
    finish = threading.Event()
    fleet.script("fetch-build", Script(exit_code=1), host="h1")
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), finish]), host="h2")
    job_id, before = crash_mid_job(
        make_world, fleet, ["h1", "h2", "h3"],
        lambda ev: printed(("h2", "fetching"))(ev) and of_type(ev, "host_finished", "h1"),
        parallel=2, max_failures=1)
    assert [e["host"] for e in of_type(before, "host_finished")] == ["h1"]
    finish.set()
    wait_until(lambda: not fleet.step("h2", "fetch").running, 5, "h2's step ended")

    second = make_world()
    second.engine.resume_owned_jobs()
    job = second.wait_finished(job_id, timeout=10)

    assert [h.status for h in job.hosts] == ["failed", "succeeded", "skipped"]
    assert fleet.started("h2") == ALL_STEPS


def test_a_restarted_console_reconnects_to_a_server_unreachable_at_first(make_world, fleet):
    finish = threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), finish,
                                        *lines("stdout", "fetched")]))
    job_id, before = crash_mid_job(make_world, fleet, ["h1"], printed(("h1", "fetching")))
    back_online = threading.Event()
    fleet.unreachable("h1", back_online)

    second = make_world(reattach_timeout=5)
    second.engine.resume_owned_jobs()
    second.wait_for(job_id, lambda ev: of_type(ev, "host_reconnecting"), timeout=5)
    back_online.set()
    finish.set()
    job = second.wait_finished(job_id, timeout=10)

    events = second.events(job_id)
    assert job.hosts[0].status == "succeeded"
    assert [e["type"] for e in events[len(before):len(before) + 3]] == \
        ["job_recovered", "host_reconnecting", "host_reconnected"]
    assert output_lines(events, "h1", step="fetch") == ["fetching", "fetched"]
    assert fleet.started("h1") == ALL_STEPS


def test_a_cancel_while_a_restarted_console_cannot_reach_a_server_cancels_it(
        make_world, fleet):
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), threading.Event()]))
    job_id, _ = crash_mid_job(make_world, fleet, ["h1"], printed(("h1", "fetching")))
    fleet.unreachable("h1")
    second = make_world(reattach_timeout=5)
    second.engine.resume_owned_jobs()
    second.wait_for(job_id, lambda ev: of_type(ev, "host_reconnecting"), timeout=5)

    second.engine.cancel(job_id)
    job = second.wait_finished(job_id, timeout=5)

    assert job.status == "cancelled"
    assert job.hosts[0].reason.startswith("lost: job cancelled while h1 was unreachable")
    assert job.hosts[0].status == "cancelled"  # as when the same happens mid-run


# -- tasks.events.resume.read_progress: what the log says of each server ---------------------


CAPTURES = {STEPS: [None, None, "version"], ON_FAILURE: [None, None]}
NAMES = {STEPS: ["fetch", "install", "report"], ON_FAILURE: ["roll back", "notify"]}


def event(kind: str, host: str | None = None, ts: float = 100.0, **data: Any) -> dict:
    return {"type": kind, "host": host, "ts": ts, "data": data}


def progress_of(*events: dict, hosts: tuple[str, ...] = ("a",)):
    return read_progress(events, list(hosts), CAPTURES, NAMES)


def step_run(host: str, index: int, status: str, phase: str = STEPS, **more: Any
             ) -> list[dict]:
    return [event("step_started", host, step=NAMES[phase][index], index=index, phase=phase),
            event("step_finished", host, step=NAMES[phase][index], index=index,
                  phase=phase, status=status, **more)]


def test_progress_of_servers_not_started_started_and_finished():
    progress = progress_of(
        event("job_started"), event("batch_started", batch=0), event("batch_started", batch=1),
        event("host_started", "b"),
        event("host_started", "c"), event("host_finished", "c", status="succeeded"),
        hosts=("a", "b", "c"))

    a, b, c = (progress.hosts[name] for name in "abc")
    assert progress.job_started and progress.started_batches == {0, 1}
    assert (a.state, a.next_step) == ("pending", None)
    assert (b.state, b.next_step) == ("between", StepPosition(STEPS, 0))
    assert (c.state, c.status) == ("finished", "succeeded")


def test_progress_inside_a_step_keeps_each_streams_last_stored_offset():
    progress = progress_of(
        event("host_started", "a"), *step_run("a", 0, "ok"),
        event("step_started", "a", ts=123.5, step="install", index=1, phase=STEPS),
        event("output", "a", stream="stdout", lines=["one", "two", ""], offset=12),
        event("output", "a", stream="stderr", lines=["warn"], offset=5),
        event("output", "a", stream="stdout", lines=["three", "  "], offset=21))

    host = progress.hosts["a"]
    assert host.state == "in_step"
    assert host.open_step.position == StepPosition(STEPS, 1)
    assert host.open_step.started_ts == 123.5
    assert host.open_step.offsets == {"stdout": 21, "stderr": 5}
    assert host.open_step.last_stdout_line == "three"


def test_progress_after_steps_that_succeeded_keeps_captures():
    partway = progress_of(event("host_started", "a"), *step_run("a", 0, "ok"))
    done = progress_of(
        event("host_started", "a"), *step_run("a", 0, "ok"), *step_run("a", 1, "ok"),
        event("step_started", "a", step="report", index=2, phase=STEPS),
        event("output", "a", stream="stdout", lines=["2.0.0"], offset=6),
        event("step_finished", "a", step="report", index=2, phase=STEPS, status="ok"))

    assert partway.hosts["a"].next_step == StepPosition(STEPS, 1)
    host = done.hosts["a"]
    assert (host.state, host.next_step, host.facts) == ("between", None, {"version": "2.0.0"})


@pytest.mark.parametrize(("status", "lost", "next_step"), [
    ("failed", False, StepPosition(ON_FAILURE, 0)),
    ("failed", True, None),  # a lost step may still run: no rollback under it
    ("cancelled", False, None),
])
def test_progress_after_a_failed_step_goes_to_on_failure_only_when_it_should(
        status, lost, next_step):
    progress = progress_of(event("host_started", "a"),
                           *step_run("a", 1, status, exit_code=3, reason="why", lost=lost))

    host = progress.hosts["a"]
    assert host.next_step == next_step
    assert host.failure == {"status": status, "failed_step": "install", "exit_code": 3,
                            "reason": "why", "lost": lost}


def test_progress_through_on_failure_steps():
    failed = [event("host_started", "a"), *step_run("a", 0, "failed", reason="boom")]

    first_ok = progress_of(*failed, *step_run("a", 0, "ok", ON_FAILURE))
    all_ok = progress_of(*failed, *step_run("a", 0, "ok", ON_FAILURE),
                         *step_run("a", 1, "ok", ON_FAILURE))
    rollback_failed = progress_of(*failed, *step_run("a", 0, "failed", ON_FAILURE))

    assert first_ok.hosts["a"].next_step == StepPosition(ON_FAILURE, 1)
    assert all_ok.hosts["a"].next_step is None
    assert rollback_failed.hosts["a"].next_step is None
    assert rollback_failed.hosts["a"].failure["reason"] == \
        "boom; on_failure step 'roll back' also failed"


# -- tasks.rollout.strategy: the rollout rules ------------------------------------------------


def test_split_batches_cuts_in_order():
    assert split_batches(list("abcdef"), [1, 3, 2]) == [["a"], ["b", "c", "d"], ["e", "f"]]
    assert split_batches([], []) == []


@pytest.mark.parametrize(("failures", "limit", "stop"), [
    (0, None, None), (5, None, None), (1, 2, None),
    (2, 2, "stopped after 2 failures (25% of the servers)"),
    (3, 2, "stopped after 3 failures (25% of the servers)"),
])
def test_failure_stop(failures, limit, stop):
    assert failure_stop(failures, limit, "25%") == stop


@pytest.mark.parametrize(("batch", "batches", "failures", "stop"), [
    (0, 2, 1, CANARY_FAILED), (0, 2, 0, None), (0, 1, 1, None), (1, 3, 1, None),
])
def test_canary_stop(batch, batches, failures, stop):
    assert canary_stop(batch, batches, failures) == stop


@pytest.mark.parametrize(("statuses", "cancelled", "status"), [
    (["succeeded", "succeeded"], False, "succeeded"),
    (["succeeded", "failed"], False, "failed"),
    (["succeeded", "skipped"], False, "failed"),
    (["succeeded", "succeeded"], True, "cancelled"),
])
def test_final_status(statuses, cancelled, status):
    assert final_status(count_statuses(statuses), len(statuses), cancelled) == status


def test_servers_never_reached_are_cancelled_or_skipped():
    assert not_started_outcome(True, None) == \
        ("cancelled", "job cancelled before this server started")
    assert not_started_outcome(False, CANARY_FAILED) == \
        ("skipped", f"not started: {CANARY_FAILED}")


def test_a_running_job_recorded_without_stored_plans_is_marked_interrupted(make_world):
    """Jobs recorded by a version that did not store each server's plan cannot be
    resumed: after a restart they end ``interrupted`` (re-runnable) and free their
    servers, as before."""
    from models import Job, JobHost, ServerLock

    world = make_world()
    with world.sessions() as session:
        job = Job(runbook="deploy", params={"build": "1.2"}, strategy={}, status="running",
                  node_id=world.engine.settings.node_id)
        session.add(job)
        session.flush()
        session.add_all([
            JobHost(job_id=job.id, server_id=1, name="h1", status="succeeded", position=0),
            JobHost(job_id=job.id, server_id=2, name="h2", status="running", position=1,
                    current_step="install"),
            ServerLock(server_id=2, job_id=job.id)])
        session.commit()
        job_id = job.id

    assert world.engine.resume_owned_jobs() == [job_id]

    with world.sessions() as session:
        job = session.get(Job, job_id)
        hosts = {host.name: (host.status, host.failed_step) for host in job.hosts}
        locks = session.query(ServerLock).count()
    assert job.status == "interrupted"
    assert hosts == {"h1": ("succeeded", None), "h2": ("interrupted", "install")}
    assert locks == 0
    assert world.events(job_id)[-1]["data"]["counts"] == {"succeeded": 1, "interrupted": 1}
