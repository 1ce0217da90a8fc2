"""Nodes over one real database and the in-memory fleet: heartbeats, a dead node's jobs
taken over exactly once, and a node that lost its job writing nothing more for it.

Each "node" is an engine of its own (its own SQLAlchemy engine, event log and node id),
as a console process would be; the cluster tests (tests/cluster/test_cluster.py) do the same
with real processes, PostgreSQL, Redis and nginx."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import sessionmaker

from models import Job, Node, ServerLock, utcnow
from tasks.engine import EngineSettings, JobEngine
from tasks.events.writer import EventLog
from tasks.nodes.membership import Membership, NodeIdentity
from tasks.planning.runbook_files import parse_runbook
from tasks.running import server_run
from tests.support.engine_world import EngineWorld, engine_database, start_thread
from tests.support.fake_transport import FakeFleet, Script, lines
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres  # `make test` runs these again on PostgreSQL

HOSTS = ["h1", "h2", "h3"]
DEPLOY = parse_runbook("""
name: deploy
steps:
  - name: fetch
    run: fetch-build
  - name: install
    run: install-build
""", "deploy.yml")
TIMEOUT = 30.0  # seconds without a heartbeat before a node counts as dead; the tests
# age a heartbeat by hand (`silence`), so a slow machine never makes a node look dead


class NodeWorld(EngineWorld):
    membership: Membership


@pytest.fixture
def fleet():
    fleet = FakeFleet(kill_grace=0.2)
    yield fleet
    fleet.close()


@pytest.fixture
def database(tmp_path: Path) -> str:
    return engine_database(tmp_path, HOSTS)


@pytest.fixture
def make_node(database, fleet, monkeypatch):
    """``make_node(name, transport=None)``: an engine plus its membership, as one node."""
    monkeypatch.setattr(server_run, "RECONNECT_FIRST_DELAY", 0.05)
    built: list[tuple[JobEngine, Any]] = []

    def make(name: str, transport=None) -> NodeWorld:
        db = create_engine(database)
        sessions = sessionmaker(bind=db, expire_on_commit=False)
        published: list[dict[str, Any]] = []
        lock = threading.Lock()
        holder: list[JobEngine] = []

        def publish(job_id: int, owner_id: int | None, events: list[dict]) -> None:
            with lock:
                published.extend({"job_id": job_id, **event} for event in events)

        engine = JobEngine(
            db_sessions=sessions,
            events=EventLog(sessions, publish, start_thread, node_id=name,
                            on_fenced=lambda job_id: holder[0].abandon(job_id)),
            runbooks=lambda: {"deploy": DEPLOY},
            start_task=start_thread,
            settings=EngineSettings(node_id=name, kill_grace=0.2, reattach_timeout=2,
                                    flush_interval=0.02),
            transport=transport or fleet.transport,
        )
        holder.append(engine)
        world = NodeWorld(engine, sessions, published)
        world.membership = Membership(sessions, NodeIdentity(name, f"http://{name}", "t"),
                                      heartbeat=0.1, timeout=TIMEOUT,
                                      take_over=engine.take_over, start_task=start_thread)
        world.membership.join()
        built.append((engine, db))
        return world

    yield make
    for engine, db in built:
        for run in list(engine._running.values()):
            run.finished.set()
        db.dispose()


def start(node: NodeWorld, servers: list[str], **strategy: Any) -> int:
    plan = node.engine.plan("deploy", {}, servers, strategy=strategy or None)
    return node.engine.start(plan, None)


def silence(node: NodeWorld, seconds: float = TIMEOUT + 5) -> None:
    """Make ``node``'s last heartbeat ``seconds`` old, as if it had died then."""
    with node.sessions() as session, session.begin():
        session.execute(update(Node).where(Node.id == node.membership.me.id)
                        .values(last_seen=utcnow() - timedelta(seconds=seconds)))


def stdout_lines(events: list[dict], host: str) -> list[str]:
    return [line for e in events if e["type"] == "output" and e["host"] == host
            and e["data"]["stream"] == "stdout" for line in e["data"]["lines"]]


def assert_gap_free(events: list[dict]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_heartbeats_tell_live_nodes_from_dead_ones(make_node):
    a, b = make_node("node-a"), make_node("node-b")
    silence(a)
    b.membership.beat()
    states = {state.id: state for state in b.membership.states()}
    assert (states["node-a"].alive, states["node-b"].alive) == (False, True)
    assert states["node-a"].address == "http://node-a"
    a.membership.beat()  # back: alive again
    assert all(state.alive for state in b.membership.states())


def test_a_dead_nodes_job_is_taken_over_and_resumed_where_its_log_stops(make_node, fleet):
    finish = threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "fetch 1"), finish,
                                        *lines("stdout", "fetch 2")]))
    console = fleet.console()
    a = make_node("node-a", transport=console.transport)
    b = make_node("node-b")
    job_id = start(a, ["h1", "h2"])
    a.wait_for(job_id, lambda ev: stdout_lines(ev, "h1") == ["fetch 1"]
               and stdout_lines(ev, "h2") == ["fetch 1"])
    console.crash()  # node A dies: its threads freeze, its heartbeat stops
    assert a.engine.events.wait_written(5)
    before = a.events(job_id)
    assert b.membership.take_over_dead_nodes() == []  # A's heartbeat is still fresh
    silence(a)

    assert b.membership.take_over_dead_nodes() == [job_id]
    wait_until(lambda: len(fleet.calls_of("attach")) == 2, 5, "B re-attached both steps")
    finish.set()
    job = b.wait_finished(job_id, timeout=10)

    events = b.events(job_id)
    assert events[:len(before)] == before
    assert_gap_free(events)
    recovered = [e for e in events if e["type"] == "job_recovered"]
    assert len(recovered) == 1
    assert recovered[0]["data"]["node"] == "node-b"
    assert "node node-a stopped answering" in recovered[0]["data"]["reason"]
    assert (job.status, job.node_id) == ("succeeded", "node-b")
    for host in ("h1", "h2"):
        assert stdout_lines(events, host) == ["fetch 1", "fetch 2", "ok"]
        assert fleet.started(host) == ["fetch-build", "install-build"]  # none twice
    with b.sessions() as session:
        assert session.scalars(select(ServerLock)).all() == []


def test_of_two_nodes_racing_for_a_dead_nodes_job_exactly_one_wins(make_node, fleet):
    finish = threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "fetch 1"), finish]))
    console = fleet.console()
    a = make_node("node-a", transport=console.transport)
    b, c = make_node("node-b"), make_node("node-c")
    job_id = start(a, ["h1"])
    a.wait_for(job_id, lambda ev: stdout_lines(ev, "h1") == ["fetch 1"])
    console.crash()
    silence(a)

    barrier = threading.Barrier(2)
    won: dict[str, list[int]] = {}

    def race(node: NodeWorld) -> None:
        barrier.wait()
        won[node.membership.me.id] = node.membership.take_over_dead_nodes()

    racers = [threading.Thread(target=race, args=(node,)) for node in (b, c)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(10)
    assert sorted(won.values()) == [[], [job_id]]
    winner = b if won["node-b"] else c
    finish.set()
    job = winner.wait_finished(job_id, timeout=10)
    events = winner.events(job_id)
    assert_gap_free(events)
    assert [e["data"]["node"] for e in events if e["type"] == "job_recovered"] == \
        [winner.membership.me.id]
    assert job.node_id == winner.membership.me.id
    assert stdout_lines(events, "h1") == ["fetch 1", "ok"]


def test_a_node_that_lost_its_job_writes_nothing_more_and_leaves_the_servers_alone(
        make_node, fleet):
    """Node A was only slow: B took its job over. A's next write is refused, A stops
    running the job without signalling the step, and every line is logged once."""
    more, finish = threading.Event(), threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "fetch 1"), more,
                                        *lines("stdout", "fetch 2"), finish,
                                        *lines("stdout", "fetch 3")]))
    a, b = make_node("node-a"), make_node("node-b")
    job_id = start(a, ["h1"])
    a.wait_for(job_id, lambda ev: stdout_lines(ev, "h1") == ["fetch 1"])
    silence(a)
    assert b.membership.take_over_dead_nodes() == [job_id]
    wait_until(lambda: fleet.calls_of("attach", "h1"), 5, "B re-attached")

    more.set()  # both nodes read "fetch 2"; only B may write it
    run_a = a.engine._running.get(job_id)
    wait_until(lambda: run_a is None or run_a.finished.is_set(), 10, "A stopped its run")
    finish.set()
    job = b.wait_finished(job_id, timeout=10)

    events = b.events(job_id)
    assert_gap_free(events)
    assert stdout_lines(events, "h1") == ["fetch 1", "fetch 2", "fetch 3", "ok"]
    assert fleet.step("h1", "fetch").signals == []  # A did not stop the step
    assert fleet.started("h1") == ["fetch-build", "install-build"]
    assert job.status == "succeeded"
    assert not [e for e in a.published if e["seq"] > events[0]["seq"]
                and e["type"] == "job_finished"]


def test_a_job_of_a_live_node_is_never_taken(make_node, fleet):
    finish = threading.Event()
    fleet.script("fetch-build", Script([*lines("stdout", "fetch 1"), finish]))
    a, b = make_node("node-a"), make_node("node-b")
    job_id = start(a, ["h1"])
    a.wait_for(job_id, lambda ev: stdout_lines(ev, "h1") == ["fetch 1"])
    a.membership.beat()
    assert b.membership.take_over_dead_nodes() == []
    assert b.engine.take_over(job_id, "node-x", "wrong owner named") is False
    finish.set()
    job = a.wait_finished(job_id, timeout=10)
    assert (job.status, job.node_id) == ("succeeded", "node-a")
    with a.sessions() as session:
        assert session.scalar(select(Job.node_id).where(Job.id == job_id)) == "node-a"
