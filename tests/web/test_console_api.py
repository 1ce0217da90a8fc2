"""The console's HTTP and Socket.IO additions, in process over a seeded event log: event
pages by seq, server and type with line budgets; search; downloads; history filters;
ad-hoc commands; the reachability probe; and the schema matching the migrations."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from services.console import console_services
from tests.conftest import socket_test_client

S2_LINES = [f"line {i}" for i in range(1, 601)]


def event(seq: int, type_: str, host: str | None = None, **data) -> dict:
    return {"seq": seq, "ts": 1_800_000_000 + seq, "type": type_, "host": host, "data": data}


EVENTS = [
    event(1, "job_started", servers=["s1", "s2"], runbook="basic", steps=["greet"]),
    event(2, "host_started", "s1", address="127.0.0.1:1"),
    event(3, "step_started", "s1", step="greet", index=0, phase="steps", command="echo"),
    event(4, "output", "s1", stream="stdout", step="greet", lines=["alpha 1", "alpha 2",
                                                                   "Needle here"]),
    event(5, "host_started", "s2", address="127.0.0.1:2"),
    event(6, "output", "s2", stream="stdout", step="greet", lines=S2_LINES),
    event(7, "output", "s1", stream="stderr", step="greet", lines=["warn ünïcode"]),
    event(8, "output", "s2", stream="stdout", step="greet", lines=["tail 1", "tail 2"]),
    event(9, "step_finished", "s1", step="greet", index=0, phase="steps", status="ok",
          exit_code=0, duration=0.5, reason=None),
    event(10, "host_finished", "s1", status="succeeded", duration=1.0),
    event(11, "host_finished", "s2", status="failed", failed_step="greet", exit_code=3,
          reason="step 'greet' exited with code 3", duration=1.5),
    event(12, "job_finished", status="failed", counts={"succeeded": 1, "failed": 1},
          duration=2.0),
]


@pytest.fixture
def seeded(app, auth):
    """alice (operator), servers s1 and s2 (no SSH behind them) and one finished job."""
    from extensions import db
    from models import Job, JobEvent, JobHost, Server

    auth.create("alice")
    auth.create("bob")
    with app.app_context():
        for port, name in enumerate(("s1", "s2"), start=1):
            db.session.add(Server(name=name, host="127.0.0.1", port=port, user="root",
                                  tags=["t"], vars={}))
        db.session.flush()
        job = Job(runbook="basic", params={"message": "hi"}, strategy={}, status="failed",
                  created_by_id=1, last_seq=len(EVENTS),
                  finished_at=datetime.now().replace(microsecond=0))
        db.session.add(job)
        db.session.flush()
        for position, (name, status) in enumerate([("s1", "succeeded"), ("s2", "failed")]):
            db.session.add(JobHost(job_id=job.id, server_id=position + 1, name=name,
                                   position=position, status=status))
        for item in EVENTS:
            db.session.add(JobEvent(job_id=job.id, **item))
        db.session.commit()
    auth.login()
    return app


def events(client, **params) -> list[dict]:
    response = client.get("/api/jobs/1/events", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["events"]


def test_event_pages_filter_by_server_and_type_and_page_back_by_seq(seeded, client):
    assert [e["seq"] for e in events(client, host="s2", type="output")] == [6, 8]
    assert [e["seq"] for e in events(client, type="host_started,host_finished")] == [2, 5, 10, 11]
    assert [e["seq"] for e in events(client, before_seq=8, limit=3)] == [5, 6, 7]
    assert [e["seq"] for e in events(client, after_seq=2, before_seq=6)] == [3, 4, 5]
    assert [e["seq"] for e in events(client, host="s1", before_seq=9, limit=2)] == [4, 7]
    assert events(client) == EVENTS
    for bad in ({"limit": 0}, {"before_seq": "x"}, {"after_seq": -1}, {"max_lines": "lots"}):
        response = client.get("/api/jobs/1/events", query_string=bad)
        assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid")
    assert client.get("/api/jobs/99/events").status_code == 404


def test_a_line_budget_sends_later_output_of_each_server_as_stubs(seeded, client):
    budgeted = events(client, max_lines=100)
    none = events(client, max_lines=0)

    assert [e["seq"] for e in budgeted] == list(range(1, 13))
    assert budgeted[3] == EVENTS[3] and budgeted[6] == EVENTS[6]  # s1: 4 lines in all
    assert budgeted[5]["data"] == {"stream": "stdout", "step": "greet", "count": 600}
    assert budgeted[7]["data"] == {"stream": "stdout", "step": "greet", "count": 2}
    assert [e for e in budgeted if e["type"] != "output"] == \
        [e for e in EVENTS if e["type"] != "output"]
    assert [e["data"].get("count") for e in none if e["type"] == "output"] == [3, 600, 1, 2]
    assert all("lines" not in e["data"] for e in none if e["type"] == "output")


def test_replay_with_a_line_budget_keeps_seq_contiguous(seeded, client):

    sock = socket_test_client(seeded, client)
    ack = sock.emit("job:subscribe", {"job_id": 1, "after_seq": 3, "replay_lines": 1},
                    callback=True)
    deadline = time.monotonic() + 10
    received: list[dict] = []
    while len(received) < 9 and time.monotonic() < deadline:
        for message in sock.get_received():
            if message["name"] == "job:events":
                received.extend(message["args"][0]["events"])
        time.sleep(0.02)  # polling interval of a deadline loop
    sock.disconnect()

    assert ack["ok"] and ack["job"]["last_seq"] == 12
    assert [e["seq"] for e in received] == list(range(4, 13))
    assert [("lines" in e["data"]) for e in received if e["type"] == "output"] == \
        [False, False, False, False]


def test_search_finds_output_lines_on_all_servers_or_one(seeded, client):
    def search(**params) -> dict:
        response = client.get("/api/jobs/1/search", query_string=params)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    found = search(q="NEEDLE")
    assert found == {"job_id": 1, "more": False, "matches": [
        {"seq": 4, "host": "s1", "stream": "stdout", "step": "greet", "index": 2,
         "line": "Needle here"}]}
    assert [m["seq"] for m in search(q="ÜNÏ")["matches"]] == [7]
    assert search(q="needle", host="s2")["matches"] == []
    many = search(q="line 5", limit=5)
    assert (len(many["matches"]), many["more"]) == (5, True)
    assert [m["index"] for m in many["matches"]] == [4, 49, 50, 51, 52]
    assert search(q='50%_"x\\')["matches"] == []
    assert client.get("/api/jobs/1/search?q=").status_code == 400


def test_downloads_are_the_log_as_text_for_the_job_or_one_server(seeded, client):
    whole = client.get("/jobs/1/log.txt")
    one = client.get("/jobs/1/log.txt?host=s1")

    assert whole.status_code == 200 and whole.is_streamed
    assert whole.headers["Content-Disposition"] == 'attachment; filename="job-1.log"'
    assert whole.mimetype == "text/plain"
    lines = whole.get_data(as_text=True).splitlines()
    assert lines[0].startswith("# Patchbay job #1: basic message=hi; started by alice at ")
    assert [line for line in lines if " stdout] " in line or " stderr] " in line] == (
        ["[s1 stdout] alpha 1", "[s1 stdout] alpha 2", "[s1 stdout] Needle here"]
        + [f"[s2 stdout] {line}" for line in S2_LINES]
        + ["[s1 stderr] warn ünïcode", "[s2 stdout] tail 1", "[s2 stdout] tail 2"])
    assert "[s2] finished: failed, exit code 3, 1.5 s, step 'greet' exited with code 3" in lines
    assert lines[-1] == "[job] finished: failed, 2.0 s (1 succeeded, 1 failed)"
    assert one.headers["Content-Disposition"] == 'attachment; filename="job-1-s1.log"'
    assert all("[s2" not in line and "[job" not in line
               for line in one.get_data(as_text=True).splitlines())
    assert client.get("/jobs/1/log.txt?host=nope").status_code == 404
    assert client.get("/jobs/2/log.txt").status_code == 404


def test_api_job_list_filters_like_the_history(seeded, client):
    from extensions import db
    from models import Job

    with seeded.app_context():
        db.session.add(Job(runbook="flaky", params={}, strategy={}, status="succeeded",
                           created_by_id=2, created_at=datetime(2030, 1, 2, 3, 4)))
        db.session.add(Job(runbook="adhoc", kind="adhoc", params={"command": "id"},
                           strategy={}, status="cancelled", created_by_id=1))
        db.session.commit()

    def ids(**params) -> list[int]:
        response = client.get("/api/jobs", query_string=params)
        assert response.status_code == 200, response.get_json()
        return [job["id"] for job in response.get_json()["jobs"]]

    assert ids() == [3, 2, 1]
    assert ids(status="failed") == [1]
    assert ids(user="bob") == [2]
    assert ids(kind="adhoc") == [3]
    assert ids(runbook="flaky") == [2]
    assert ids(since="2030-01-02", until="2030-01-02") == [2]
    assert ids(since="2030-01-02T03:05") == []
    assert ids(limit=1, page=2) == [2]
    for bad in ({"status": "done"}, {"kind": "x"}, {"since": "yesterday"},
                {"until": "2030-01-01T00:00+02:00"}):
        response = client.get("/api/jobs", query_string=bad)
        assert response.status_code == 400, bad


BAD_ADHOC = [
    ({"servers": ["s1"]}, "command"),
    ({"command": "", "servers": ["s1"]}, "command"),
    ({"command": "   ", "servers": ["s1"]}, "command"),
    ({"command": "x" * 4097, "servers": ["s1"]}, "command"),
    ({"command": "echo a\x00b", "servers": ["s1"]}, "command"),
    ({"command": 7, "servers": ["s1"]}, "command"),
    ({"command": "id"}, "servers"),
    ({"command": "id", "servers": ["nope"]}, "servers"),
    ({"command": "id", "servers": ["s1"], "tags": ["t"]}, "servers"),
    ({"command": "id", "servers": ["s1"], "strategy": {"parallel": 0}}, "strategy.parallel"),
    ({"command": "id", "servers": ["s1"], "runbook": "basic"}, "runbook"),
]


def test_bad_adhoc_requests_get_error_acks_and_start_nothing(seeded, client):

    sock = socket_test_client(seeded, client)
    acks = [sock.emit("job:adhoc", payload, callback=True) for payload, _ in BAD_ADHOC]
    sock.disconnect()

    for ack, (payload, field) in zip(acks, BAD_ADHOC, strict=True):
        assert ack["ok"] is False, payload
        assert ack["error"]["field"] == field, (payload, ack)
        assert ack["error"]["code"] in ("invalid", "unknown_server"), ack
    assert [job["id"] for job in client.get("/api/jobs").get_json()["jobs"]] == [1]


def test_adhoc_on_a_server_held_by_a_running_job_is_refused(seeded, client):
    from extensions import db
    from models import Job, ServerLock

    with seeded.app_context():
        db.session.add(Job(id=5, runbook="sleepy", params={}, strategy={}, status="running"))
        db.session.add(ServerLock(server_id=1, job_id=5))
        db.session.commit()
    sock = socket_test_client(seeded, client)
    ack = sock.emit("job:adhoc", {"command": "uptime", "servers": ["s2", "s1"]}, callback=True)
    sock.disconnect()

    assert ack == {"ok": False, "error": {
        "code": "server_busy", "field": "servers",
        "message": "server s1 is held by running job #5",
        "held": [{"job_id": 5, "status": "running", "servers": ["s1"]}]}}


def test_a_busy_refusal_counts_the_held_servers_and_names_every_holding_job(seeded, client):
    from extensions import db
    from models import Job, Server, ServerLock

    with seeded.app_context():
        for port in range(3, 10):
            db.session.add(Server(name=f"s{port}", host="127.0.0.1", port=port, user="root",
                                  tags=["t"], vars={}))
        db.session.add(Job(id=7, runbook="sleepy", params={}, strategy={}, status="running"))
        db.session.add(Job(id=9, runbook="sleepy", params={}, strategy={}, status="paused"))
        db.session.flush()
        for server_id in range(1, 8):  # s1 .. s7
            db.session.add(ServerLock(server_id=server_id, job_id=7))
        db.session.add(ServerLock(server_id=9, job_id=9))
        db.session.commit()
    names = [f"s{n}" for n in range(1, 10)]
    sock = socket_test_client(seeded, client)
    ack = sock.emit("job:start", {"runbook": "basic", "params": {"message": "x"},
                                  "servers": names}, callback=True)
    sock.disconnect()

    error = ack["error"]
    assert error["code"] == "server_busy"
    assert error["message"] == (
        "8 of the 9 servers chosen are busy: s1, s2, s3, s4, s5 and 2 more in running job "
        "#7; s9 in paused job #9. Wait for those jobs to end, or choose other servers")
    assert error["held"] == [
        {"job_id": 7, "status": "running", "servers": [f"s{n}" for n in range(1, 8)]},
        {"job_id": 9, "status": "paused", "servers": ["s9"]}]
    assert [job["id"] for job in client.get("/api/jobs").get_json()["jobs"]] == [9, 7, 1]


def test_a_failed_adhoc_job_reruns_its_command_as_typed_on_the_servers_that_failed(seeded):
    from extensions import db
    from models import Job, JobHost

    command = "echo {{ vars.root }} '{{ params.x }}' && exit 1"
    with seeded.app_context():
        job = Job(runbook="adhoc", kind="adhoc", params={"command": command}, strategy={},
                  status="failed")
        db.session.add(job)
        db.session.flush()
        db.session.add(JobHost(job_id=job.id, server_id=1, name="s1", status="succeeded"))
        db.session.add(JobHost(job_id=job.id, server_id=2, name="s2", status="failed",
                               position=1))
        db.session.commit()
        job_id = job.id
    plan = console_services(seeded).engine.rerun_plan(job_id)

    assert (plan.kind, plan.runbook_name, plan.params) == \
        ("adhoc", "adhoc", {"command": command})
    assert [(h.name, [(s.name, s.command) for s in h.steps], h.on_failure)
            for h in plan.hosts] == [("s2", [("command", command)], [])]


def test_the_reachability_probe_stores_every_round_and_publishes_changes(seeded):
    from sqlalchemy import select

    from extensions import db
    from models import Server
    from services.fleet import ProbeSettings, ReachabilityProbe

    answers = {1: None, 2: "connection refused"}
    published: list[tuple[list[dict], str]] = []

    def start_task(function, *args):
        threading.Thread(target=function, args=args, daemon=True).start()

    with seeded.app_context():
        sessions = console_services(seeded).engine.db_sessions
        probe = ReachabilityProbe(
            sessions=sessions, publish=lambda rows, at: published.append((rows, at)),
            start_task=start_task, wanted=lambda: False, settings=ProbeSettings(),
            check=lambda host, port, timeout: answers[port])
        first = probe.check_all()
        second = probe.check_all()
        answers[2] = None
        third = probe.check_all()
        stored = db.session.execute(select(Server.name, Server.reachable, Server.reach_error,
                                           Server.last_checked)).all()

    assert [(r["name"], r["reachable"], r["reach_error"]) for r in first] == \
        [("s1", True, None), ("s2", False, "connection refused")]
    assert second == []
    assert [(r["name"], r["reachable"]) for r in third] == [("s2", True)]
    assert [(name, ok, error) for name, ok, error, _ in stored] == \
        [("s1", True, None), ("s2", True, None)]
    assert all(checked is not None for *_, checked in stored)
    assert len(published) == 3 and all(at.endswith("Z") for _, at in published)


def test_fleet_rows_name_the_job_holding_a_server(seeded):
    from extensions import db
    from models import Job, ServerLock
    from services.fleet import fleet_rows, servers_touched

    with seeded.app_context():
        db.session.add(Job(id=7, runbook="sleepy", params={}, strategy={}, status="running"))
        db.session.add(ServerLock(server_id=2, job_id=7))
        db.session.commit()
        rows = fleet_rows(db.session)

    assert [(r["name"], r["held_by"]) for r in rows] == [("s1", None), ("s2", 7)]
    assert servers_touched(EVENTS) == {"s1", "s2"}
    assert servers_touched([e for e in EVENTS if e["type"] == "output"]) == set()


def test_the_models_match_the_migrations(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from extensions import db

    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)

    assert differences == []


def test_a_rerun_leaves_out_servers_a_later_job_fixed_and_says_so(seeded, client):
    from extensions import db
    from models import Job, JobHost

    with seeded.app_context():  # job #2: the same job again, and s2 succeeded there
        db.session.add(Job(id=2, runbook="basic", params={"message": "hi"}, strategy={},
                           status="succeeded", created_by_id=1,
                           finished_at=datetime.now().replace(microsecond=0)))
        db.session.add(JobHost(job_id=2, server_id=2, name="s2", position=0,
                               status="succeeded"))
        db.session.commit()
    assert client.get("/api/jobs/1").get_json()["job"]["succeeded_since"] == {"s2": 2}
    sock = socket_test_client(seeded, client)
    ack = sock.emit("job:rerun", {"job_id": 1}, callback=True)
    sock.disconnect()

    assert ack == {"ok": False, "error": {
        "code": "invalid", "field": "job_id",
        "message": "nothing left to re-run in job #1: s2 succeeded since in job #2"}}
    assert [job["id"] for job in client.get("/api/jobs").get_json()["jobs"]] == [2, 1]
