"""Issue #12, finding 4: "Any viewer can trigger unbounded work". Each limit, held:
one replay per socket and job, sockets per user, bytes per page and replay batch, a
search budget, the fleet probe's rate, a job's stored output, and event retention.

The tests that read the event log through SQL that differs by database (page sizes,
search, pruning, the output cap) run again on PostgreSQL (`make test-postgres`)."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import socketio as socketio_client
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from services.console import console_services
from tests.conftest import PASSWORD, PROJECT, AuthActions
from tests.support.waiting import wait_until

postgres = pytest.mark.postgres


def event(seq: int, type_: str, host: str | None = None, **data: Any) -> dict:
    return {"seq": seq, "ts": 1_800_000_000 + seq, "type": type_, "host": host, "data": data}


def output(seq: int, host: str, lines: list[str], stream: str = "stdout") -> dict:
    return event(seq, "output", host, stream=stream, step="greet", lines=lines)


def add_job(app, events: list[dict], *, status: str = "succeeded",
            finished_days_ago: float | None = 0, hosts: tuple[str, ...] = ("s1", "s2")
            ) -> int:
    """A job of alice's with ``events`` (its servers ``hosts``); returns its id."""
    from extensions import db
    from models import Job, JobEvent, JobHost, Server

    with app.app_context():
        for name in hosts:
            if db.session.scalar(select(Server.id).where(Server.name == name)) is None:
                db.session.add(Server(name=name, host="127.0.0.1", port=1, user="root",
                                      tags=["t"], vars={}))
        db.session.flush()
        now = datetime.now().replace(microsecond=0)
        finished = None if finished_days_ago is None else \
            now - timedelta(days=finished_days_ago)
        job = Job(runbook="basic", params={"message": "hi"}, strategy={}, status=status,
                  created_by_id=1, last_seq=len(events), finished_at=finished,
                  created_at=(finished or now) - timedelta(minutes=5))
        db.session.add(job)
        db.session.flush()
        for position, name in enumerate(hosts):
            db.session.add(JobHost(job_id=job.id, name=name, position=position,
                                   status="succeeded" if status != "running" else "running"))
        for item in events:
            db.session.add(JobEvent(job_id=job.id, **item))
        db.session.commit()
        return job.id


def small_job_events(hosts: tuple[str, ...] = ("s1", "s2"), outputs: int = 3,
                     line: str = "x" * 40) -> list[dict]:
    """job_started, then per server host_started, ``outputs`` output events of 5 lines,
    host_finished; then job_finished."""
    found = [event(1, "job_started", servers=list(hosts), runbook="basic", steps=["greet"])]
    for host in hosts:
        found.append(event(len(found) + 1, "host_started", host, address="127.0.0.1:1"))
        for number in range(outputs):
            found.append(output(len(found) + 1, host,
                                [f"{host} {number}.{i} {line}" for i in range(5)]))
        found.append(event(len(found) + 1, "host_finished", host, status="succeeded"))
    found.append(event(len(found) + 1, "job_finished", status="succeeded",
                       counts={"succeeded": len(hosts)}, duration=1.0))
    return found


@pytest.fixture
def world(app, auth):
    """alice (operator) and bob (viewer), alice logged in."""
    auth.create("alice")
    auth.create("bob", role="viewer")
    auth.login()
    return app


def socket_client(app, client):
    """Flask-SocketIO's test client on ``client``'s session, with the page's CSRF token
    in the handshake, as the console's pages connect."""
    from extensions import socketio

    page = client.get("/").get_data(as_text=True)
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    return socketio.test_client(app, flask_test_client=client,
                                auth={"csrf_token": found.group(1) if found else ""})


class Replayed:
    """The ``job:events`` batches one test socket receives."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.batches: list[list[dict]] = []

    def seqs(self) -> list[int]:
        self.batches += [message["args"][0]["events"] for message in self.sock.get_received()
                         if message["name"] == "job:events"]
        return [e["seq"] for batch in self.batches for e in batch]


# -- Replays: one per socket and job ----------------------------------------------------


class GatedReads:
    """Wraps the replay's page reader and its emits: the first read waits until the test
    opens the gate, so a replay is held under way while the test acts."""

    def __init__(self, monkeypatch) -> None:
        import blueprints.live.job_access as job_access
        from extensions import socketio

        self.entered = threading.Event()
        self.gate = threading.Event()
        self.threads: list[threading.Thread] = []
        self.emitted: list[list[int]] = []
        self._lock = threading.Lock()
        read_page, emit = job_access.read_page, socketio.emit

        def read(*args: Any, **kwargs: Any):
            with self._lock:
                first = not self.threads
                if threading.current_thread() not in self.threads:
                    self.threads.append(threading.current_thread())
            if first:
                self.entered.set()
                assert self.gate.wait(30), "the test never opened the gate"
            return read_page(*args, **kwargs)

        def counted_emit(name: str, payload: Any = None, *args: Any, **kwargs: Any):
            if name == "job:events":
                with self._lock:
                    self.emitted.append([e["seq"] for e in payload["events"]])
            return emit(name, payload, *args, **kwargs)

        monkeypatch.setattr(job_access, "read_page", read)
        monkeypatch.setattr(socketio, "emit", counted_emit)

    def idle(self) -> bool:
        """Every replay task that read has ended."""
        with self._lock:
            return bool(self.threads) and not any(t.is_alive() for t in self.threads)


def test_finding_4_a_second_subscribe_replaces_the_running_replay(world, client, monkeypatch):
    stored = small_job_events()
    job_id = add_job(world, stored)
    reads = GatedReads(monkeypatch)
    sock = socket_client(world, client)

    first = sock.emit("job:subscribe", {"job_id": job_id, "after_seq": 0,
                                        "replay_lines": 1000}, callback=True)
    assert reads.entered.wait(10)
    again = [sock.emit("job:subscribe", {"job_id": job_id, "after_seq": 2,
                                         "replay_lines": 1000}, callback=True)
             for _ in range(5)]
    reads.gate.set()
    wait_until(reads.idle, 10, "the replays ended")
    seqs = Replayed(sock).seqs()
    sock.disconnect()

    assert first["ok"] and all(ack["ok"] for ack in again)
    assert len(reads.threads) == 1, "one replay task for one socket and job"
    assert seqs == list(range(3, len(stored) + 1)), "the last request, each event once"


def test_finding_4_a_disconnect_stops_the_replay(world, client, monkeypatch):
    job_id = add_job(world, small_job_events())
    reads = GatedReads(monkeypatch)
    sock = socket_client(world, client)
    sock.emit("job:subscribe", {"job_id": job_id, "after_seq": 0, "replay_lines": 1000},
              callback=True)
    assert reads.entered.wait(10)

    sock.disconnect()
    reads.gate.set()
    wait_until(reads.idle, 10, "the replay task ended")

    assert reads.emitted == [], "nothing read for a socket that is gone is sent"


# -- Sockets per user ------------------------------------------------------------------


def test_finding_4_the_21st_socket_of_a_user_is_refused(world, client, app):
    sockets = [socket_client(world, client) for _ in range(20)]
    refused = socket_client(world, client)
    other = app.test_client()
    AuthActions(app, other).login("bob")
    bobs = socket_client(world, other)  # another user: a count of his own
    sockets[0].disconnect()
    again = socket_client(world, client)

    assert all(sock.is_connected() for sock in sockets[1:])
    assert not refused.is_connected()
    assert bobs.is_connected()
    assert again.is_connected(), "a closed socket no longer counts"
    for sock in [*sockets[1:], bobs, again]:
        sock.disconnect()


def test_finding_4_a_refused_socket_is_told_why(live_server_factory):
    server = live_server_factory(env={"PATCHBAY_MAX_SOCKETS_PER_USER": "2"})
    http = server.login()
    held = [server.socket(http) for _ in range(2)]
    third = socketio_client.Client(http_session=http, reconnection=False)
    reasons: list = []
    third.on("connect_error", reasons.append)

    with pytest.raises(socketio_client.exceptions.ConnectionError):
        third.connect(server.url, transports=["websocket"], wait_timeout=10,
                      auth={"csrf_token": http.headers["X-CSRFToken"]})
    held[0].disconnect()
    wait_until(lambda: _connects(server, http), 10, "a socket after one was closed")
    for sock in held[1:]:
        sock.disconnect()

    assert reasons == [{"message": "too_many_sockets: you have 2 connections to this "
                        "console open (PATCHBAY_MAX_SOCKETS_PER_USER); close a tab or a "
                        "client and connect again"}]


def _connects(server, http) -> bool:
    try:
        server.socket(http).disconnect()
    except socketio_client.exceptions.ConnectionError:
        return False  # the server has not seen the close yet
    return True


# -- Bytes per page, replay batch and download ------------------------------------------


def json_size(value: Any) -> int:
    return len(json.dumps(value))


@postgres
def test_finding_4_an_event_page_stops_at_the_byte_limit(world, client):
    stored = small_job_events(outputs=20)  # 83 events, 40 outputs of ~300 bytes
    job_id = add_job(world, stored)
    world.config["MAX_PAGE_BYTES"] = 4096
    pages, after = [], 0
    while True:
        answer = client.get(f"/api/jobs/{job_id}/events",
                            query_string={"after_seq": after, "limit": 5000}).get_json()
        pages.append(answer)
        after = answer["last_seq"]
        if not answer["more"]:
            break
    back = client.get(f"/api/jobs/{job_id}/events",
                      query_string={"before_seq": len(stored) + 1}).get_json()

    assert len(pages) > 3
    assert all(json_size(page["events"]) <= 4096 for page in pages)
    assert [e for page in pages for e in page["events"]] == stored, "no gap, nothing twice"
    assert back["more"] and back["events"] == stored[-len(back["events"]):]
    assert json_size(back["events"]) <= 4096


@postgres
def test_finding_4_an_event_bigger_than_the_page_limit_still_comes_alone(world, client):
    stored = [event(1, "job_started", servers=["s1"]),
              output(2, "s1", ["y" * 3000]), output(3, "s1", ["z" * 3000])]
    job_id = add_job(world, stored, hosts=("s1",))
    world.config["MAX_PAGE_BYTES"] = 1000

    first = client.get(f"/api/jobs/{job_id}/events", query_string={"after_seq": 1}).get_json()
    second = client.get(f"/api/jobs/{job_id}/events", query_string={"after_seq": 2}).get_json()

    assert (first["events"], first["more"], first["last_seq"]) == ([stored[1]], True, 2)
    assert (second["events"], second["more"]) == ([stored[2]], False)


@postgres
def test_finding_4_line_budgeted_pages_and_downloads_stop_at_the_byte_limit(world, client):
    stored = small_job_events(outputs=20)
    job_id = add_job(world, stored)
    world.config["MAX_PAGE_BYTES"] = 2048
    budgeted, after = [], 0
    while True:
        answer = client.get(f"/api/jobs/{job_id}/events", query_string={
            "after_seq": after, "max_lines": 10}).get_json()
        budgeted.append(answer["events"])
        after = answer["last_seq"]
        if not answer["more"]:
            break
    download = client.get(f"/jobs/{job_id}/log.txt").get_data(as_text=True)

    events = [e for page in budgeted for e in page]
    assert [e["seq"] for e in events] == list(range(1, len(stored) + 1))
    assert all(json_size(page) <= 2048 for page in budgeted)
    for page in budgeted:  # the line budget is per page
        for host in ("s1", "s2"):
            assert sum(len(e["data"].get("lines", [])) for e in page
                       if e["type"] == "output" and e["host"] == host) <= 10
    assert download.count(" stdout] ") == 2 * 20 * 5, "the whole log, page by page"


@postgres
def test_finding_4_replay_batches_stop_at_the_byte_limit(world, client):
    stored = small_job_events(outputs=20)
    job_id = add_job(world, stored)
    world.config["MAX_PAGE_BYTES"] = 4096
    sock = socket_client(world, client)
    received = Replayed(sock)

    sock.emit("job:subscribe", {"job_id": job_id, "after_seq": 0}, callback=True)
    wait_until(lambda: len(received.seqs()) >= len(stored), 10, "the whole replay")
    sock.disconnect()

    assert len(received.batches) > 3
    assert all(json_size(batch) <= 4096 for batch in received.batches)
    assert [e for batch in received.batches for e in batch] == stored


@postgres
def test_finding_4_the_job_list_stops_at_the_byte_limit(world, client):
    many = ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8")
    job_ids = [add_job(world, [], hosts=many) for _ in range(6)]
    world.config["MAX_PAGE_BYTES"] = 4096
    pages, before = [], None
    while True:
        answer = client.get("/api/jobs", query_string={"limit": 500, **(
            {"before_id": before} if before else {})}).get_json()
        pages.append(answer)
        before = answer["next_before_id"]
        if not answer["more"]:
            break

    assert len(pages) > 1
    assert all(json_size(page["jobs"]) <= 4096 for page in pages)
    assert [job["id"] for page in pages for job in page["jobs"]] == job_ids[::-1]


# -- Search: in the database, within a budget -----------------------------------------


@postgres
def test_finding_4_a_search_too_broad_for_its_budget_is_refused(world, client):
    stored = small_job_events(outputs=5)  # 10 output events
    stored[-3]["data"]["lines"][0] = "the rare NEEDLE"  # s2's last output event
    job_id = add_job(world, stored)
    world.config["SEARCH_MAX_EVENTS"] = 6

    def search(**params: Any):
        return client.get(f"/api/jobs/{job_id}/search", query_string=params)

    broad = search(q="needle")
    on_one_server = search(q="needle", host="s2")
    in_a_seq_range = search(q="needle", after_seq=9)
    common = search(q="s1 0.", limit=3)  # settled within the first events

    assert broad.status_code == 422
    assert broad.get_json()["error"]["code"] == "search_too_broad"
    assert "give a host, or a seq range" in broad.get_json()["error"]["message"]
    assert [m["line"] for m in on_one_server.get_json()["matches"]] == ["the rare NEEDLE"]
    assert [m["seq"] for m in in_a_seq_range.get_json()["matches"]] == [stored[-3]["seq"]]
    assert common.status_code == 200 and common.get_json()["more"] is True


@postgres
def test_finding_4_search_matches_lines_in_the_database_not_in_python(world, client,
                                                                      monkeypatch):
    from models import JobEvent

    stored = [event(1, "job_started", servers=["s1"]),
              output(2, "s1", ["plain", "Grüße aus KÖLN", "a*b?[c] 50%_x"]),
              output(3, "s1", ["köln again"], stream="stderr")]
    job_id = add_job(world, stored, hosts=("s1",))

    def no_decoding(self):
        raise AssertionError("search decoded an event in Python")

    monkeypatch.setattr(JobEvent, "to_dict", no_decoding)

    def lines(text: str) -> list[tuple[int, int, str, str]]:
        answer = client.get(f"/api/jobs/{job_id}/search", query_string={"q": text})
        assert answer.status_code == 200, answer.get_json()
        return [(m["seq"], m["index"], m["stream"], m["line"])
                for m in answer.get_json()["matches"]]

    assert lines("köln") == [(2, 1, "stdout", "Grüße aus KÖLN"),
                             (3, 0, "stderr", "köln again")]
    assert lines("GRÜSSE") == []  # case-blind per character: ß is not ss
    assert lines("grüße") == [(2, 1, "stdout", "Grüße aus KÖLN")]
    assert lines("*b?[c]") == [(2, 2, "stdout", "a*b?[c] 50%_x")]
    assert lines("50%_") == [(2, 2, "stdout", "a*b?[c] 50%_x")]
    assert lines("a.b") == []


# -- The fleet probe's rate ---------------------------------------------------------------


def test_finding_4_fleet_probe_requests_beyond_the_rate_are_refused(world, client, app,
                                                                    monkeypatch):
    from services.fleet import ReachabilityProbe

    rounds: list[bool] = []
    monkeypatch.setattr(ReachabilityProbe, "ensure_running",
                        lambda self, now=False: rounds.append(now))
    world.config["FLEET_PROBE_RATE_LIMIT"] = "2 per minute"
    sock = socket_client(world, client)

    acks = [sock.emit("fleet:subscribe", {"probe": True}, callback=True) for _ in range(3)]
    quiet = sock.emit("fleet:subscribe", {"probe": False}, callback=True)
    other = app.test_client()
    AuthActions(app, other).login("bob")
    bobs = socket_client(world, other)
    bob_ack = bobs.emit("fleet:subscribe", {"probe": True}, callback=True)
    sock.disconnect()
    bobs.disconnect()

    assert [ack["ok"] for ack in acks] == [True, True, False]
    assert acks[2]["error"]["code"] == "rate_limited"
    assert "PATCHBAY_FLEET_PROBE_RATE_LIMIT" in acks[2]["error"]["message"]
    assert quiet["ok"] and bob_ack["ok"]
    assert rounds == [True, True, False, True], "no round for the refused request"


# -- A job's stored output ------------------------------------------------------------------


HOSTS = ["h1", "h2", "h3"]
LINE = "x" * 49  # 50 bytes with its newline


@pytest.fixture
def engine_world(tmp_path: Path):
    """Engines over the in-memory fleet on a fresh database, one runbook ``print``."""
    from tasks.engine import EngineSettings, JobEngine
    from tasks.events.writer import EventLog
    from tasks.planning.runbook_files import parse_runbook
    from tests.support.engine_world import EngineWorld, engine_database, start_thread
    from tests.support.fake_transport import FakeFleet

    book = parse_runbook("name: print\nsteps:\n  - name: print\n    run: print-lots\n"
                         "  - name: after\n    run: say-done\n", "print.yml")
    fleet = FakeFleet(kill_grace=0.2)
    url = engine_database(tmp_path, HOSTS)
    built = []

    def make(transport=None, **settings: Any) -> EngineWorld:
        db = create_engine(url)
        sessions = sessionmaker(bind=db, expire_on_commit=False)
        engine = JobEngine(db_sessions=sessions,
                           events=EventLog(sessions, lambda *_: None, start_thread),
                           runbooks=lambda: {"print": book}, start_task=start_thread,
                           settings=EngineSettings(**{"kill_grace": 0.2,
                                                      "flush_interval": 0.02, **settings}),
                           transport=transport or fleet.transport)
        built.append((engine, db))
        return EngineWorld(engine, sessions)

    yield make, fleet
    for engine, db in built:
        for run in list(engine._running.values()):
            run.finished.set()
        db.dispose()
    fleet.close()


def stored_output(events: list[dict]) -> tuple[int, dict[str, list[str]]]:
    """Bytes of the output lines stored (markers aside), and each server's markers."""
    from tasks.running.output import line_bytes

    size = sum(line_bytes(e["data"]["lines"]) for e in events
               if e["type"] == "output" and not e["data"].get("cut"))
    markers: dict[str, list[str]] = {}
    for e in events:
        if e["type"] == "output" and e["data"].get("cut"):
            markers.setdefault(e["host"], []).extend(e["data"]["lines"])
    return size, markers


@postgres
def test_finding_4_a_job_stops_storing_output_at_its_cap_and_still_finishes(engine_world):
    from tests.support.fake_transport import Script, lines

    make, fleet = engine_world
    fleet.script("print-lots", Script(lines("stdout", *[LINE] * 40)))  # 2000 bytes each
    fleet.script("say-done", Script(lines("stdout", "done"), exit_code=0))
    world = make(max_job_output=3000)
    plan = world.engine.plan("print", {}, HOSTS, strategy={"parallel": 1})

    job = world.wait_finished(world.engine.start(plan, None), timeout=20)

    events = world.events(job.id)
    size, markers = stored_output(events)
    assert (job.status, [h.status for h in job.hosts]) == ("succeeded", ["succeeded"] * 3)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert 2000 <= size <= 3000
    assert sorted(markers) == ["h2", "h3"], "one marker on each server that lost lines"
    assert markers["h2"] == ["[output cut: the job's stored output reached 2.9 KiB "
                             "(PATCHBAY_MAX_JOB_OUTPUT); later lines are not kept]"]
    h3 = [e for e in events if e["host"] == "h3" and e["type"] == "output"]
    assert [e["data"].get("cut") for e in h3] == [True], "h3 stores nothing but the marker"
    steps = [e["data"]["status"] for e in events if e["type"] == "step_finished"]
    assert steps == ["ok"] * 6


@postgres
def test_finding_4_a_resumed_job_counts_on_from_the_output_it_stored(engine_world):
    from tests.support.fake_transport import Script, lines

    make, fleet = engine_world
    more = threading.Event()
    fleet.script("print-lots", Script([*lines("stdout", *[LINE] * 5), more,
                                       *lines("stdout", *[LINE] * 5)]))
    console = fleet.console()
    first = make(transport=console.transport, max_job_output=300)
    job_id = first.engine.start(first.engine.plan("print", {}, ["h1"]), None)
    first.wait_for(job_id, lambda events: stored_output(events)[0] == 250, timeout=10)
    console.crash()
    assert first.engine.events.wait_written(5)
    more.set()  # the step prints on while no console runs
    wait_until(lambda: not fleet.step("h1", "print-lots").running, 10, "the step ended")

    second = make(max_job_output=300)
    assert second.engine.resume_owned_jobs() == [job_id]
    job = second.wait_finished(job_id, timeout=20)

    size, markers = stored_output(second.events(job_id))
    assert job.status == "succeeded"
    assert size <= 300, "the 250 bytes stored before the restart still count"
    assert list(markers) == ["h1"]


def test_finding_4_resume_reads_the_stored_output_and_the_cut_servers():
    from tasks.events.resume import read_progress

    events = [event(1, "job_started"), event(2, "host_started", "h1"),
              event(3, "step_started", "h1", step="print", index=0, phase="steps"),
              output(4, "h1", ["ab", "ü"]),
              event(5, "output", "h1", stream="stderr", step="print", lines=["[cut]"],
                    cut=True)]

    progress = read_progress(events, ["h1", "h2"], {"steps": [None]}, {"steps": ["print"]})

    assert (progress.output_bytes, progress.output_cut) == (3 + 3, {"h1"})


# -- Retention ------------------------------------------------------------------------------


def aged_jobs(app) -> dict[str, int]:
    """An old finished job, a recent one, and an old one still running."""
    return {"old": add_job(app, small_job_events(outputs=4), finished_days_ago=40),
            "recent": add_job(app, small_job_events(), finished_days_ago=2),
            "running": add_job(app, small_job_events()[:-1], status="running",
                               finished_days_ago=None)}


def log_of(app, job_id: int) -> list[dict]:
    from extensions import db
    from models import JobEvent

    with app.app_context():
        return [row.to_dict() for row in db.session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))]


@postgres
def test_finding_4_prune_events_removes_old_finished_logs_only(world, client, monkeypatch):
    import services.retention

    monkeypatch.setattr(services.retention, "PRUNE_BATCH", 5)  # several batches per job
    jobs = aged_jobs(world)
    recent, running = log_of(world, jobs["recent"]), log_of(world, jobs["running"])
    old = log_of(world, jobs["old"])
    runner = world.test_cli_runner()

    done = runner.invoke(args=["prune-events", "--older-than", "30"])
    again = runner.invoke(args=["prune-events", "--older-than", "30"])

    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        f"job #{jobs['old']}: {len(old)} event(s) removed",
        f"pruned 1 finished job(s) older than 30 day(s): {len(old)} event(s) removed"]
    assert again.output.splitlines()[-1].startswith("pruned 0 finished job(s)")
    pruned = log_of(world, jobs["old"])
    assert [(e["seq"], e["type"]) for e in pruned] == [(1, "events_pruned"),
                                                      (2, "job_finished")]
    assert pruned[0]["data"]["days"] == 30 and pruned[0]["data"]["events"] == len(old)
    assert pruned[1]["data"] == old[-1]["data"]
    assert (log_of(world, jobs["recent"]), log_of(world, jobs["running"])) == \
        (recent, running)
    summary = client.get(f"/api/jobs/{jobs['old']}").get_json()["job"]
    assert (summary["status"], summary["last_seq"], len(summary["hosts"])) == \
        ("succeeded", 2, 2)
    page = client.get(f"/api/jobs/{jobs['old']}/events").get_json()
    assert [e["type"] for e in page["events"]] == ["events_pruned", "job_finished"]
    assert "[job] events pruned after 30 days" in \
        client.get(f"/jobs/{jobs['old']}/log.txt").get_data(as_text=True)
    assert client.get(f"/jobs/{jobs['old']}").status_code == 200


def test_finding_4_prune_events_wants_a_number_of_days(world):
    result = world.test_cli_runner().invoke(args=["prune-events"])

    assert result.exit_code != 0
    assert "--older-than DAYS" in result.output


@pytest.fixture
def retaining_app(tmp_path: Path):
    """An app with PATCHBAY_EVENT_RETENTION_DAYS=30 and alice."""
    from flask_migrate import upgrade

    from app import create_app
    from tests.support.databases import fresh_database_url

    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance"),
                      "SQLALCHEMY_DATABASE_URI": fresh_database_url(tmp_path),
                      "SECRET_KEY": "test-secret", "ASYNC_MODE": "threading",
                      "RUNBOOK_DIR": str(PROJECT / "tests" / "runbooks"),
                      "EVENT_RETENTION_DAYS": 30})
    with app.app_context():
        upgrade(directory=str(PROJECT / "migrations"))
    result = app.test_cli_runner().invoke(args=["create-user", "alice", "--password",
                                                PASSWORD])
    assert result.exit_code == 0, result.output
    yield app
    console_services(app).retention.stop()


def test_finding_4_with_a_retention_setting_each_node_prunes_by_itself(retaining_app):
    jobs = aged_jobs(retaining_app)
    recent = log_of(retaining_app, jobs["recent"])

    console_services(retaining_app).retention.start()  # as start_node does
    wait_until(lambda: [e["type"] for e in log_of(retaining_app, jobs["old"])] ==
               ["events_pruned", "job_finished"], 10, "the old job pruned")

    assert log_of(retaining_app, jobs["recent"]) == recent
    assert console_services(retaining_app).retention.interval == 86_400


# -- Before login, and per socket (audit 3, item 8) -------------------------------------


def test_audit3_8_anonymous_handshakes_are_capped_per_address(live_server_factory):
    import requests

    server = live_server_factory(env={"PATCHBAY_MAX_HANDSHAKES_PER_ADDRESS": "5"})
    refused = socketio_client.Client(reconnection=False)
    with pytest.raises(socketio_client.exceptions.ConnectionError):
        refused.connect(server.url, transports=["websocket"], wait_timeout=10)
    codes = [requests.get(f"{server.url}/socket.io/?EIO=4&transport=polling",
                          timeout=10).status_code for _ in range(6)]

    # the refused websocket's session was closed at once: five polling ones still fit
    assert codes == [200] * 5 + [401]
    assert "PATCHBAY_MAX_HANDSHAKES_PER_ADDRESS" in server.log()
    assert "Traceback" not in server.log()


def test_audit3_8_a_socket_replays_at_most_its_limit_of_jobs_the_oldest_stops():
    from blueprints.live.job_access import Replays

    registry = Replays(per_socket=8)
    started = [registry.request("s1", job, 0, None) for job in range(1, 10)]
    other = registry.request("s2", 1, 0, None)

    assert all(started) and other
    assert registry.current("s1", 1) is None, "the oldest replay was stopped"
    assert all(registry.current("s1", job) for job in range(2, 10))
    assert registry.running() == 9


def test_audit3_8_log_downloads_are_rate_limited_per_user(world, client, app):
    job_id = add_job(world, small_job_events())
    world.config["LOG_DOWNLOAD_RATE_LIMIT"] = "2 per minute"
    # the whole-output page reads the whole log too: it counts with the downloads
    codes = [client.get(f"/jobs/{job_id}/{path}")
             for path in ("log.txt", "output", "log.txt")]
    page_refused = client.get(f"/jobs/{job_id}/output")
    other = app.test_client()
    AuthActions(app, other).login("bob")
    bobs = other.get(f"/jobs/{job_id}/log.txt")

    assert [r.status_code for r in codes] == [200, 200, 429]
    assert "PATCHBAY_LOG_DOWNLOAD_RATE_LIMIT" in codes[2].get_data(as_text=True)
    assert page_refused.status_code == 429
    assert "PATCHBAY_LOG_DOWNLOAD_RATE_LIMIT" in page_refused.get_data(as_text=True)
    assert bobs.status_code == 200, "another user has a count of his own"
