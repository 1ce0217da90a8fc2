"""The job engine over real OpenSSH servers on loopback."""

from __future__ import annotations

import subprocess

import paramiko
import pytest

from tests.conftest import TEST_RUNBOOKS, write_inventory
from tests.support.engine_world import build_world
from tests.support.remote import RunToTheEnd, host_session, unique_seconds
from tests.support.remote import remote_commands as commands_on
from tests.support.waiting import wait_until

# `make test` runs these again under gevent, and again on PostgreSQL
pytestmark = [pytest.mark.asyncmode, pytest.mark.postgres]

# Remote commands found by their command line: unique to this test process
NAP_CANCEL, NAP_TIMEOUT, NAP_BUSY, NAP_LOST, NAP_REATTACHED, CHATTY = (
    unique_seconds(n) for n in range(1, 7))


@pytest.fixture
def world(app, sshd_fleet, tmp_path):
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory

    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    return build_world(app, TEST_RUNBOOKS)


def names(fleet) -> list[str]:
    return [host.name for host in fleet.hosts]


def test_job_over_eight_hosts_streams_everything_in_order(world, sshd_fleet):
    before = {h.address: sshd_fleet.connections_to(h.address) for h in sshd_fleet.hosts}
    plan = world.engine.plan("basic", {"message": "hi there"}, names(sshd_fleet))

    job = world.wait_finished(world.engine.start(plan, None))

    events = world.events(job.id)
    assert job.status == "succeeded"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["seq"] for e in world.published if e["job_id"] == job.id] == \
        [e["seq"] for e in events]
    assert {h.status for h in job.hosts} == {"succeeded"}
    finished = events[-1]
    assert finished["type"] == "job_finished"
    assert finished["data"]["counts"] == {"succeeded": 8}
    for host in names(sshd_fleet):
        lines = [line for e in events if e["type"] == "output" and e["host"] == host
                 and e["data"]["stream"] == "stdout" for line in e["data"]["lines"]]
        assert lines[0] == f"hello from {host}:  hi there"
        assert [line for line in lines if line.startswith("line ")] == \
            [f"line {i}" for i in range(1, 51)]
        stderr = [line for e in events if e["type"] == "output" and e["host"] == host
                  and e["data"]["stream"] == "stderr" for line in e["data"]["lines"]]
        assert stderr == ["a warning on stderr"]
        host_done = next(e for e in events if e["type"] == "host_finished"
                         and e["host"] == host)
        assert host_done["data"]["facts"] == {"version": "2.0.0"}
    output_events = [e for e in events if e["type"] == "output"]
    assert len(output_events) < 8 * 10, "output should be coalesced, not one event per line"
    after = {h.address: sshd_fleet.connections_to(h.address) for h in sshd_fleet.hosts}
    assert {a: after[a] - before[a] for a in after} == {a: 1 for a in after}


def test_failing_step_fails_only_that_host_and_runs_on_failure_there(world, sshd_fleet):
    plan = world.engine.plan("basic", {"message": "x", "fail_on": "h03"}, names(sshd_fleet))

    job = world.wait_finished(world.engine.start(plan, None))

    statuses = {h.name: h.status for h in job.hosts}
    reasons = {h.name: (h.failed_step, h.exit_code, h.reason) for h in job.hosts
               if h.status != "succeeded"}
    assert job.status == "failed"
    assert statuses.pop("h03") == "failed"
    assert set(statuses.values()) == {"succeeded"}, reasons
    failed = next(h for h in job.hosts if h.name == "h03")
    assert (failed.failed_step, failed.exit_code) == ("maybe fail", 3)
    events = world.events(job.id)
    rollbacks = [e["host"] for e in events if e["type"] == "step_started"
                 and e["data"]["phase"] == "on_failure"]
    assert rollbacks == ["h03"]
    boom = [line for e in events if e["type"] == "output" and e["host"] == "h03"
            and e["data"]["stream"] == "stderr" for line in e["data"]["lines"]]
    assert "boom on h03" in boom


def remote_commands(fleet, host) -> list[str]:
    return commands_on(host.address, host.port, "root", str(fleet.client_key),
                       str(fleet.known_hosts))


def test_cancel_stops_the_remote_command(world, sshd_fleet):
    hosts = names(sshd_fleet)[:2]
    job_id = world.engine.start(world.engine.plan("sleepy", {"seconds": NAP_CANCEL}, hosts), None)
    world.wait_for(job_id, lambda ev: sum(
        1 for e in ev if e["type"] == "output" and "napping" in e["data"]["lines"]) == 2)

    ack = world.engine.cancel(job_id)
    job = world.wait_finished(job_id, timeout=30)

    assert ack["cancelled"] is True
    assert job.status == "cancelled"
    assert {h.status for h in job.hosts} == {"cancelled"}
    assert f"sleep {NAP_CANCEL}" not in remote_commands(sshd_fleet, sshd_fleet.hosts[0])
    assert world.engine.cancel(job_id)["cancelled"] is False


def test_step_timeout_stops_the_command_with_a_clear_reason(world, sshd_fleet):
    plan = world.engine.plan("sleepy", {"seconds": NAP_TIMEOUT}, ["h01"], strategy={"timeout": 1})

    job = world.wait_finished(world.engine.start(plan, None), timeout=30)

    host = job.hosts[0]
    assert (job.status, host.status, host.failed_step) == ("failed", "failed", "nap")
    assert (host.reason, host.exit_code) == ("timed out after 1 s, stopped (TERM)", None)
    assert f"sleep {NAP_TIMEOUT}" not in remote_commands(sshd_fleet, sshd_fleet.hosts[0])


def test_busy_server_is_refused_and_nothing_starts(world, sshd_fleet):
    from tasks.errors import PatchbayError

    first = world.engine.start(world.engine.plan("sleepy", {"seconds": NAP_BUSY}, ["h01"]), None)
    with pytest.raises(PatchbayError) as refused:
        world.engine.start(world.engine.plan("sleepy", {"seconds": "1"}, ["h02", "h01"]), None)
    assert refused.value.code == "server_busy"
    assert refused.value.message == f"server h01 is held by running job #{first}"
    assert world.events(first + 1) == []
    world.engine.cancel(first)
    world.wait_finished(first)


def test_connection_failures_fail_only_their_server(world, sshd_fleet, tmp_path, app):
    from extensions import db
    from models import Server
    from tests.support.sshd_fleet import free_port

    wrong_key = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)],
                   check=True)
    with app.app_context():
        db.session.get(Server, 1).port = free_port()  # h01: nothing listens there
        db.session.get(Server, 2).key_path = str(wrong_key)  # h02: key not authorised
        db.session.commit()
    plan = world.engine.plan("basic", {"message": "x"}, ["h01", "h02", "h03"])

    job = world.wait_finished(world.engine.start(plan, None))

    by_name = {h.name: h for h in job.hosts}
    assert by_name["h01"].status == "failed"
    assert by_name["h01"].reason.startswith("connection refused by 127.0.0.101:")
    assert by_name["h02"].status == "failed"
    assert by_name["h02"].reason == (
        f"authentication failed for root@127.0.0.102:{sshd_fleet.port} "
        "(the server refused our key)")
    assert by_name["h03"].status == "succeeded"


def most_at_once(events: list[dict]) -> int:
    running = peak = 0
    for event in events:
        if event["type"] == "host_started":
            running += 1
            peak = max(peak, running)
        elif event["type"] == "host_finished" and event["data"].get("duration") is not None:
            running -= 1
    return peak


def test_parallel_limit_is_honoured(world, sshd_fleet):
    plan = world.engine.plan("flaky", {"fail_on": "none", "ticks": "10"}, names(sshd_fleet),
                             strategy={"parallel": 3})

    job = world.wait_finished(world.engine.start(plan, None))

    assert job.status == "succeeded"
    assert most_at_once(world.events(job.id)) == 3


def test_failed_canary_batch_stops_the_rollout(world, sshd_fleet):
    plan = world.engine.plan("flaky", {"fail_on": "h01"}, names(sshd_fleet),
                             strategy={"batches": [1, "50%"]})

    job = world.wait_finished(world.engine.start(plan, None))

    statuses = {h.name: h.status for h in job.hosts}
    assert (job.status, statuses.pop("h01")) == ("failed", "failed")
    assert set(statuses.values()) == {"skipped"}
    finished = world.events(job.id)[-1]["data"]
    assert finished["reason"] == "the canary batch failed"
    assert finished["counts"] == {"failed": 1, "skipped": 7}
    assert [h.batch for h in job.hosts] == [0, 1, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("limit", [2, "25%"])
def test_max_failures_stops_new_servers(world, sshd_fleet, limit):
    plan = world.engine.plan("flaky", {"fail_on": "h01,h02,h03"}, names(sshd_fleet),
                             strategy={"parallel": 1, "max_failures": limit})

    job = world.wait_finished(world.engine.start(plan, None))

    statuses = [h.status for h in job.hosts]
    assert job.status == "failed"
    assert statuses == ["failed", "failed"] + ["skipped"] * 6
    assert world.events(job.id)[-1]["data"]["reason"] == "stopped after 2 failures" + \
        (" (25% of the servers)" if limit == "25%" else "")


def test_dry_run_shows_exactly_the_commands_that_then_run(world, sshd_fleet):
    plan = world.engine.plan("basic", {"message": "it's $(here); `now`"}, ["h01", "h02"])
    preview = plan.preview()

    job = world.wait_finished(world.engine.start(plan, None))

    ran = {(e["host"], e["data"]["step"]): e["data"]["command"] for e in world.events(job.id)
           if e["type"] == "step_started"}
    planned = {(h["name"], s["name"]): s["command"] for h in preview["hosts"]
               for s in h["steps"]}
    assert ran == planned
    greet = [line for e in world.events(job.id) if e["type"] == "output"
             and e["host"] == "h01" and e["data"]["stream"] == "stdout"
             for line in e["data"]["lines"]]
    assert greet[0] == "hello from h01:  it's $(here); `now`"


def test_rerun_targets_only_the_servers_that_did_not_succeed(world, sshd_fleet):
    first = world.wait_finished(world.engine.start(
        world.engine.plan("flaky", {"fail_on": "h02,h05"}, names(sshd_fleet)[:6]), None))

    plan = world.engine.rerun_plan(first.id)
    second = world.wait_finished(world.engine.start(plan, None, rerun_of=first.id))

    assert [h.name for h in second.hosts] == ["h02", "h05"]
    assert second.rerun_of_id == first.id
    assert second.params == first.params


def set_server(app, name: str, **fields) -> None:
    from sqlalchemy import select

    from extensions import db
    from models import Server

    with app.app_context():
        server = db.session.scalar(select(Server).where(Server.name == name))
        for key, value in fields.items():
            setattr(server, key, value)
        db.session.commit()


def test_unknown_and_changed_host_keys_are_refused_with_the_fingerprint(
        world, sshd_fleet, app, tmp_path):
    from tasks.transport.host_keys import fingerprint

    served = paramiko.PKey.from_path(sshd_fleet.directory / "host_key")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.102]:{sshd_fleet.port} "
                       + " ".join((tmp_path / "other_key.pub").read_text().split()[:2]) + "\n")
    set_server(app, "h01", known_hosts=str(empty))
    set_server(app, "h02", known_hosts=str(changed))

    job = world.wait_finished(world.engine.start(
        world.engine.plan("basic", {"message": "x"}, ["h01", "h02", "h03"]), None))

    by_name = {h.name: h for h in job.hosts}
    assert by_name["h01"].reason == (
        f"unknown host key for [127.0.0.101]:{sshd_fleet.port}: ssh-ed25519 "
        f"{fingerprint(served)} is not in known_hosts")
    assert by_name["h02"].reason == (
        f"host key mismatch for 127.0.0.102:{sshd_fleet.port}: server offered ssh-ed25519 "
        f"{fingerprint(served)}, known_hosts expects "
        f"{fingerprint(paramiko.PKey.from_path(other))}")
    assert (by_name["h01"].status, by_name["h02"].status, by_name["h03"].status) == \
        ("failed", "failed", "succeeded")


def test_dns_failure_fails_only_that_server(world, sshd_fleet, app):
    set_server(app, "h01", host="no-such-host.invalid")

    job = world.wait_finished(world.engine.start(
        world.engine.plan("basic", {"message": "x"}, ["h01", "h02"]), None))

    by_name = {h.name: h for h in job.hosts}
    assert by_name["h01"].reason == "DNS lookup failed for no-such-host.invalid"
    assert by_name["h02"].status == "succeeded"


def host_lines(events, host: str, stream: str) -> list[str]:
    return [line for e in events if e["type"] == "output" and e["host"] == host
            and e["data"]["stream"] == stream for line in e["data"]["lines"]]


def test_ssh_drop_mid_step_reattaches_and_the_log_equals_the_server_output(
        world, sshd_fleet):
    import os
    import signal

    job_id = world.engine.start(world.engine.plan("ticker", {"ticks": "60"}, ["h04"]), None)
    world.wait_for(job_id, lambda ev: len(host_lines(ev, "h04", "stdout")) >= 5)

    for pid in sshd_fleet.session_processes():
        os.kill(pid, signal.SIGKILL)
    job = world.wait_finished(job_id, timeout=60)

    events = world.events(job_id)
    host = job.hosts[0]
    assert (job.status, host.status) == ("succeeded", "succeeded")
    assert "host_reconnecting" in [e["type"] for e in events]
    assert "host_reconnected" in [e["type"] for e in events]
    assert host_lines(events, "h04", "stdout") == \
        [f"tick {i}" for i in range(1, 61)] + ["finished"]
    assert host_lines(events, "h04", "stderr") == [f"tock {i}" for i in range(1, 61)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_a_server_unreachable_past_the_reattach_timeout_is_lost_and_its_step_left_running(
        app, tmp_path):
    import os
    import signal

    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory
    from tests.support.sshd_fleet import start_fleet

    lonely = start_fleet(tmp_path / "lonely", 1, first_address="127.0.0.121", name_prefix="l")
    write_inventory(tmp_path / "inventory.yml", lonely.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory((tmp_path / "inventory.yml").read_text()))
        db.session.commit()
    world = build_world(app, TEST_RUNBOOKS, reattach_timeout=2)
    try:
        job_id = world.engine.start(world.engine.plan("sleepy", {"seconds": NAP_LOST}, ["l01"]),
                                    None)
        world.wait_for(job_id, lambda ev: any(e["type"] == "output" for e in ev))
        sessions = lonely.session_processes()
        for process in lonely.processes:  # the listener first: no reconnect can succeed
            process.send_signal(signal.SIGKILL)
        for pid in sessions:
            os.kill(pid, signal.SIGKILL)
        job = world.wait_finished(job_id, timeout=60)
        still_running = subprocess.run(["pgrep", "-f", f"^sleep {NAP_LOST}$"], capture_output=True,
                                       text=True, check=False).stdout.split()
    finally:
        subprocess.run(["pkill", "-f", f"^sleep {NAP_LOST}$"], check=False)
        lonely.stop()

    host = job.hosts[0]
    assert (job.status, host.status, host.failed_step) == ("failed", "failed", "nap")
    assert host.reason.startswith("lost: no SSH connection to l01 for 2 s")
    assert "left running on the server (not killed)" in host.reason
    assert still_running, "the remote step must be left running, not killed"


def test_accept_new_records_an_unknown_host_key_but_still_refuses_a_changed_one(
        world, sshd_fleet, app, tmp_path):
    known = tmp_path / "tofu" / "known_hosts"
    set_server(app, "h05", known_hosts=str(known), host_key_policy="accept-new")

    first = world.wait_finished(world.engine.start(
        world.engine.plan("basic", {"message": "x"}, ["h05"]), None))
    recorded = known.read_text()
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    known.write_text(recorded.replace(recorded.split()[2],
                                      (tmp_path / "other_key.pub").read_text().split()[1]))
    second = world.wait_finished(world.engine.start(
        world.engine.plan("basic", {"message": "x"}, ["h05"]), None))

    assert first.status == "succeeded"
    assert recorded.startswith(f"[127.0.0.105]:{sshd_fleet.port} ssh-ed25519 ")
    assert second.hosts[0].reason.startswith("host key mismatch for 127.0.0.105:")


def test_cancel_reaches_a_reattached_step_through_its_stored_process_group(world, sshd_fleet):
    import os
    import signal

    job_id = world.engine.start(
        world.engine.plan("sleepy", {"seconds": NAP_REATTACHED}, ["h06"]), None)
    world.wait_for(job_id, lambda ev: any(e["type"] == "output" for e in ev))
    for pid in sshd_fleet.session_processes():
        os.kill(pid, signal.SIGKILL)
    world.wait_for(job_id, lambda ev: any(e["type"] == "host_reconnected" for e in ev))

    world.engine.cancel(job_id)
    job = world.wait_finished(job_id, timeout=30)

    assert (job.status, job.hosts[0].status) == ("cancelled", "cancelled")
    wait_until(lambda: subprocess.run(["pgrep", "-f", f"^sleep {NAP_REATTACHED}$"],
                                      check=False).returncode == 1,
               timeout=10, what="the remote command to be gone")


def test_a_step_whose_output_passes_the_limit_is_stopped(app, sshd_fleet, tmp_path):
    from extensions import db
    from tasks.planning.adhoc import CommandRunbook
    from tasks.planning.inventory import apply_inventory, parse_inventory

    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    world = build_world(app, TEST_RUNBOOKS, max_step_output=200_000)

    job = world.wait_finished(world.engine.start(world.engine.plan(
        CommandRunbook(), {"command": f"yes 'a chatty line {CHATTY}'"}, ["h07"]), None))

    host = job.hosts[0]
    assert (job.status, host.status, host.failed_step) == ("failed", "failed", "command")
    assert "PATCHBAY_MAX_STEP_OUTPUT" in host.reason
    wait_until(lambda: subprocess.run(["pgrep", "-f", f"^yes a chatty line {CHATTY}$"],
                                      check=False).returncode == 1,
               timeout=10, what="the remote command to be gone")


def _leftovers(runs, host: str):
    """A leftover job directory 8 days old and a recent one, on ``host``'s account."""
    import os
    import time

    old, recent = runs / "an-old-job" / host / "0", runs / "a-recent-job" / host / "0"
    for leftover in (old, recent):
        leftover.mkdir(parents=True, exist_ok=True)
    eight_days_ago = time.time() - 8 * 86_400
    os.utime(runs / "an-old-job", (eight_days_ago, eight_days_ago))
    return old, recent


def test_a_job_removes_its_run_directories_and_leftovers_past_retention(
        world, sshd_fleet, monkeypatch):
    import tasks.transport.ssh

    monkeypatch.setattr(tasks.transport.ssh, "_last_sweep", {})  # this console never swept h08
    runs = sshd_fleet.hosts[7].root / ".patchbay" / "runs"
    old, recent = _leftovers(runs, "h08")

    job = world.wait_finished(world.engine.start(
        world.engine.plan("basic", {"message": "x"}, ["h08"]), None))

    assert job.status == "succeeded"
    assert not (runs / job.uid / "h08").exists()
    assert not (runs / "an-old-job").exists()
    assert recent.exists()


def test_the_retention_sweep_runs_once_an_interval_and_every_job_removes_its_own(
        world, sshd_fleet, monkeypatch):
    """Between two sweeps of a server, a finished server's directory goes by a plain
    `rm`; leftovers past retention wait for the next sweep."""
    import tasks.transport.ssh

    monkeypatch.setattr(tasks.transport.ssh, "_last_sweep", {})
    runs = sshd_fleet.hosts[7].root / ".patchbay" / "runs"

    def run_job():
        job = world.wait_finished(world.engine.start(
            world.engine.plan("basic", {"message": "x"}, ["h08"]), None))
        assert job.status == "succeeded"
        assert not (runs / job.uid / "h08").exists()

    run_job()  # the first job sweeps
    old, recent = _leftovers(runs, "h08")
    run_job()  # within the interval: its own directory only
    assert old.exists() and recent.exists()

    monkeypatch.setattr(tasks.transport.ssh, "SWEEP_INTERVAL", 0.0)  # the interval has passed
    run_job()
    assert not (runs / "an-old-job").exists()
    assert recent.exists()


SEQ_BOOK = """\
name: seq
description: Prints numbered lines as fast as the server can.
params:
  lines:
    type: integer
    pattern: '^[0-9]{1,7}$'
steps:
  - name: seq
    run: seq -f 'line %07.0f of a step that prints far more than its window' {{ params.lines }}
"""


def test_a_small_ssh_window_streams_a_big_output_whole_and_in_order(app, sshd_fleet, tmp_path):
    """PATCHBAY_SSH_WINDOW bounds what a server sends ahead of the console's reading;
    at its smallest (16 KiB, in 4 KiB packets) 4 MB per server still arrives whole."""
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory

    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    books = tmp_path / "books"
    books.mkdir()
    (books / "seq.yml").write_text(SEQ_BOOK)
    world = build_world(app, books, ssh_window=1)  # raised to the 16 KiB minimum
    hosts = names(sshd_fleet)[:2]

    job = world.wait_finished(world.engine.start(
        world.engine.plan("seq", {"lines": "70000"}, hosts), None))

    events = world.events(job.id)
    assert job.status == "succeeded", events[-1]
    for host in hosts:
        lines = [line for e in events if e["type"] == "output" and e["host"] == host
                 for line in e["data"]["lines"]]
        assert lines == [f"line {i:07d} of a step that prints far more than its window"
                         for i in range(1, 70_001)]


class StopAtOnce:
    """A step control that asks to cancel the step at its first check."""

    def stop_reason(self) -> str:
        return "cancel"

    def tick(self) -> None:
        return None


def test_one_agent_runs_a_server_s_steps_on_one_channel_and_a_stop_starts_another(
        sshd_fleet, monkeypatch):
    """Every step of a session goes to one agent shell (one channel, one pair of output
    files); a stopped step ends that agent, and the next step starts a new one."""
    import time
    from secrets import token_hex

    import tasks.transport.ssh
    from tasks.transport.protocol import StepLocation

    host = sshd_fleet.hosts[6]
    uid = f"agent-test-{token_hex(8)}"
    run_dir = host.root / ".patchbay" / "runs" / uid / host.name
    with host_session(sshd_fleet, 6) as (session, _):
        opened: list[str] = []
        original_open = session._open

        def counting_open(command: str, stdin: bool = False):
            opened.append("agent" if stdin else "control")
            return original_open(command, stdin)

        session._open = counting_open
        lines: list[tuple[str, str, str]] = []

        def run(key: str, command: str, control=None):
            where = StepLocation("~/.patchbay/runs", uid, host.name, key)
            return session.start_step(
                where, command, lambda stream, text, _offset: lines.append((key, stream, text)),
                control or RunToTheEnd())

        results = [run("0", "echo one; printf two"), run("1", "echo oops >&2; exit 3"),
                   run("2", "echo")]
        assert [r.exit_code for r in results] == [0, 3, 0]
        assert lines == [("0", "stdout", "one"), ("0", "stdout", "two"),
                         ("1", "stderr", "oops"), ("2", "stdout", "")]
        assert opened == ["agent"]
        agents = {(run_dir / f"{key}.start").read_text().split()[0] for key in "012"}
        assert len(agents) == 1

        stopped = run("3", "sleep 30", StopAtOnce())
        after = run("4", "echo after")
        assert (stopped.stopped, stopped.signal) == ("cancel", "TERM")
        assert after.exit_code == 0 and lines[-1] == ("4", "stdout", "after")
        assert opened.count("agent") == 2
        assert (run_dir / "4.start").read_text().split()[0] not in agents

        # Swept a moment ago: the agent removes the directory itself.
        monkeypatch.setattr(tasks.transport.ssh, "_last_sweep", {
            (host.address, host.port, "root", "~/.patchbay/runs"): time.monotonic()})
        channels = len(opened)
        session.clean(f"~/.patchbay/runs/{uid}/{host.name}", "~/.patchbay/runs", 3600)
        assert len(opened) == channels
    assert not run_dir.exists()


def test_audit3b_6_the_run_directory_is_private_and_a_step_keeps_the_account_s_umask(
        world, sshd_fleet, tmp_path):
    """While a step runs, its run directory is 0700 and its output files and FIFOs
    0600 (other accounts on the server cannot read a secret it prints); the step's own
    files get the login shell's usual umask (a deployed build stays readable)."""
    import os
    import stat

    login_umask = os.umask(0)
    os.umask(login_umask)  # the test sshd, and so its login shells, inherited this one
    step_dir = tmp_path / "step"
    step_dir.mkdir()
    job_id = world.engine.start(world.engine.plan(
        "private-files", {"dir": str(step_dir)}, ["h06"]), None)
    wait_until(lambda: (step_dir / "made-by-step").exists(), timeout=30)

    from models import Job

    with world.sessions() as session:
        uid = session.get(Job, job_id).uid
    job_dir = sshd_fleet.hosts[5].root / ".patchbay" / "runs" / uid
    host_dir = job_dir / "h06"
    # Under bash each stream's tee is a process substitution, started asynchronously:
    # its file may appear after the step has begun (and made its file).
    wait_until(lambda: {path.name.split(".")[0] for path in host_dir.iterdir()}
               >= {"out", "err"}, timeout=30, what="the step's out.* and err.* files")
    modes = {path.name: stat.S_IMODE(path.lstat().st_mode) for path in host_dir.iterdir()}
    dir_modes = [stat.S_IMODE(path.stat().st_mode) for path in (job_dir, host_dir)]
    made = stat.S_IMODE((step_dir / "made-by-step").stat().st_mode)
    (step_dir / "go").touch()
    job = world.wait_finished(job_id)

    assert dir_modes == [0o700, 0o700]
    assert any(name.startswith("out.") for name in modes)
    assert any(name.startswith("err.") for name in modes)
    assert modes == dict.fromkeys(modes, 0o600)
    assert made == 0o666 & ~login_umask
    assert job.status == "succeeded"


def test_a_connection_closed_during_the_handshake_is_a_transport_error_to_retry():
    """paramiko re-raises its reader's EOFError when the server closes the connection
    mid-handshake. It escaped as a bare EOFError, so a reconnect after an SSH drop that
    met one ended the server `internal error: EOFError` (make chaos saw it) instead of
    trying again."""
    import socket
    import threading

    from tasks.transport.connecting import connect_failure_kind
    from tasks.transport.protocol import Target, TransportError
    from tasks.transport.ssh import SSHHostSession

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def banner_then_close() -> None:
        with listener:
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                peer.shutdown(socket.SHUT_WR)  # the connection ends from this side ...
                while peer.recv(4096):  # ... read to the client's close: no reset
                    pass

    threading.Thread(target=banner_then_close, daemon=True).start()
    session = SSHHostSession(Target("gs-x", "127.0.0.1", port, "root", None, "/dev/null"),
                             connect_timeout=5)
    with pytest.raises(TransportError) as failed:
        session.connect()
    session.close()

    assert str(failed.value) == f"connection to 127.0.0.1:{port} closed during the SSH handshake"
    assert connect_failure_kind(failed.value) == "dropped"
