"""GET /metrics: counters that move by exactly what a job did (over real sshd, and over
the in-memory fleet for every kind of server outcome), who may read them (admins,
allowed addresses, through a trusted proxy), a bad allow list refused at start, SSH
connect failures counted by kind, sockets and the event queue as gauges.

Metrics are per process, so every check compares a scrape before with one after."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from models import JobEvent
from services.metrics import instrument
from tasks.engine import EngineSettings, JobEngine
from tasks.events.writer import EventLog
from tasks.meters import REGISTRY
from tasks.planning.runbook_files import parse_runbook
from tasks.running import server_run
from tasks.transport.protocol import Target
from tasks.transport.ssh import SSHError, SSHHostSession
from tests.conftest import AuthActions, socket_test_client, write_inventory
from tests.support.databases import fresh_database_url
from tests.support.engine_world import EngineWorld, engine_database, start_thread
from tests.support.fake_transport import FakeFleet, Script, lines
from tests.support.sshd_fleet import free_port
from tests.support.waiting import wait_until

Sample = tuple[str, frozenset[tuple[str, str]]]
DEPLOY = parse_runbook("""
name: deploy
params: {}
steps:
  - name: fetch
    run: fetch-build
  - name: install
    run: install-build
on_failure:
  - name: roll back
    run: roll-back
""", "deploy.yml")


def parse(text: str) -> dict[Sample, float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples}


def moved(before: dict[Sample, float], after: dict[Sample, float]) -> dict[str, float]:
    """The counters (``_total``) and histogram counts (``_count``) that changed, as
    ``name{label=value,...}`` -> how much."""
    changed = {}
    for key, value in after.items():
        name, labels = key
        if name.endswith(("_total", "_count")) and value != before.get(key, 0.0):
            shown = ",".join(f"{k}={v}" for k, v in sorted(labels))
            changed[f"{name}{{{shown}}}"] = value - before.get(key, 0.0)
    return changed


def in_process() -> dict[Sample, float]:
    return parse(generate_latest(REGISTRY).decode())


def gauge(name: str) -> float:
    return in_process()[(name, frozenset())]


# -- a job over real sshd, scraped over HTTP --------------------------------------------


@pytest.fixture
def local_app(monkeypatch, request):
    """The ``app`` fixture, built with /metrics open to 127.0.0.1 and ::1."""
    monkeypatch.setenv("PATCHBAY_METRICS_ALLOW", "127.0.0.1, ::1")
    return request.getfixturevalue("app")


def csrf_token(client) -> str:
    import re

    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def scrape(client, **kwargs: Any) -> dict[Sample, float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.get_data(as_text=True))


def test_a_job_over_ssh_moves_the_counters_by_exactly_what_it_did(
        local_app, sshd_fleet, tmp_path):
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory

    app = local_app
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    client = app.test_client()
    auth = AuthActions(app, client)
    auth.create("olga", role="operator")
    auth.login("olga")
    scraper = app.test_client()  # anonymous, from 127.0.0.1
    hosts = [host.name for host in sshd_fleet.hosts[:4]]
    before = scrape(scraper)

    started = client.post("/api/jobs", headers={"X-CSRFToken": csrf_token(client)}, json={
        "runbook": "basic", "params": {"message": "hi", "fail_on": hosts[2]},
        "servers": hosts})
    assert started.status_code == 201, started.get_json()
    job_id = started.get_json()["job_id"]
    finished = "patchbay_jobs_finished_total{runbook=basic,status=failed}"

    def once_finished() -> dict[Sample, float] | None:
        now = scrape(scraper)
        return now if finished in moved(before, now) else None

    after = wait_until(once_finished, 60, "the job counted as finished")

    with app.app_context():
        events = db.session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all()
    steps = [e.data["status"] for e in events if e.type == "step_finished"]
    assert moved(before, after) == {
        "patchbay_jobs_started_total{runbook=basic}": 1,
        finished: 1,
        "patchbay_hosts_finished_total{reason=ok,status=succeeded}": 3,
        "patchbay_hosts_finished_total{reason=step_failed,status=failed}": 1,
        "patchbay_step_duration_seconds_count{status=ok}": steps.count("ok"),
        "patchbay_step_duration_seconds_count{status=failed}": 1,
        "patchbay_ssh_connect_seconds_count{}": 4,
        "patchbay_events_written_total{}": len(events),
    }
    assert steps.count("ok") == 3 * 4 + 3  # h03: two steps, then its on_failure step


# -- every server outcome, over the in-memory fleet --------------------------------------


@pytest.fixture
def fleet():
    fleet = FakeFleet(kill_grace=0.2)
    yield fleet
    fleet.close()


@pytest.fixture
def fake_world(tmp_path: Path, fleet, monkeypatch):
    """An engine over the fake fleet whose event log counts into the metrics."""
    monkeypatch.setattr(server_run, "RECONNECT_FIRST_DELAY", 0.05)
    db = create_engine(engine_database(tmp_path, [f"h{i}" for i in range(1, 7)]))
    sessions = sessionmaker(bind=db, expire_on_commit=False)
    events = EventLog(sessions, lambda *args: None, start_thread)
    instrument(events, sessions)
    engine = JobEngine(
        db_sessions=sessions, events=events, runbooks=lambda: {"deploy": DEPLOY},
        start_task=start_thread, transport=fleet.transport,
        settings=EngineSettings(kill_grace=0.2, reattach_timeout=1, flush_interval=0.02,
                                max_step_output=1000))
    yield EngineWorld(engine, sessions)
    db.dispose()


def test_each_server_outcome_is_counted_under_its_one_word_reason(fake_world, fleet):
    world = fake_world
    fleet.refuse("h2")
    fleet.script("fetch-build", Script(exit_code=3), host="h3")
    fleet.script("fetch-build", Script([*lines("stdout", *("x" * 49 for _ in range(40))),
                                        threading.Event()]), host="h4")
    fleet.script("fetch-build", Script([*lines("stdout", "fetching"), threading.Event()]),
                 host="h5")
    fleet.script("fetch-build", Script([threading.Event()]), host="h6")
    before = in_process()

    first = world.engine.start(world.engine.plan("deploy", {}, ["h1", "h2", "h3", "h4",
                                                                "h5"]), None)
    world.wait_for(first, lambda ev: any(e["type"] == "output" and e["host"] == "h5"
                                         for e in ev))
    fleet.drop("h5", reconnect=False)
    world.wait_finished(first, timeout=30)
    second = world.engine.start(world.engine.plan("deploy", {}, ["h6"],
                                                  strategy={"timeout": 0.5}), None)
    world.wait_finished(second, timeout=30)

    events = world.events(first) + world.events(second)
    steps = [e["data"]["status"] for e in events if e["type"] == "step_finished"]
    assert moved(before, in_process()) == {
        "patchbay_jobs_started_total{runbook=deploy}": 2,
        "patchbay_jobs_finished_total{runbook=deploy,status=failed}": 2,
        "patchbay_hosts_finished_total{reason=ok,status=succeeded}": 1,
        "patchbay_hosts_finished_total{reason=connect,status=failed}": 1,
        "patchbay_hosts_finished_total{reason=step_failed,status=failed}": 1,
        "patchbay_hosts_finished_total{reason=output_limit,status=failed}": 1,
        "patchbay_hosts_finished_total{reason=lost,status=failed}": 1,
        "patchbay_hosts_finished_total{reason=timeout,status=failed}": 1,
        "patchbay_step_duration_seconds_count{status=ok}": steps.count("ok"),
        "patchbay_step_duration_seconds_count{status=failed}": steps.count("failed"),
        "patchbay_events_written_total{}": len(events),
    }
    assert (steps.count("ok"), steps.count("failed")) == (2 + 3, 4)  # + roll backs


def test_the_queue_depth_gauge_counts_events_not_yet_written(tmp_path):
    url = fresh_database_url(tmp_path)
    sessions = sessionmaker(bind=create_engine(url))
    log = EventLog(sessions, lambda *args: None, lambda task: None)  # no writer runs
    instrument(log, sessions)
    before = gauge("patchbay_event_queue_depth")

    log.open_job(1, None)
    for _ in range(3):
        log.append(1, "output", "h1", {"stream": "stdout", "lines": ["x"]})

    assert gauge("patchbay_event_queue_depth") == before + 3


# -- who may read them -----------------------------------------------------------------


def test_without_an_allow_list_only_admins_read_the_metrics(app, auth):
    anonymous = app.test_client()
    refused = anonymous.get("/metrics")  # a scraper is told, not sent to a login page
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"

    for role in ("viewer", "operator", "admin"):
        auth.create(role, role=role)
        client = app.test_client()
        AuthActions(app, client).login(role)
        response = client.get("/metrics")
        assert response.status_code == (200 if role == "admin" else 403), role
    assert "patchbay_jobs_started" in response.get_data(as_text=True)


def test_allowed_addresses_read_without_logging_in_and_others_do_not(local_app):
    client = local_app.test_client()

    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 401
    assert client.get("/api/servers").status_code == 401  # the allow list opens /metrics only


def test_behind_a_trusted_proxy_the_forwarded_client_address_decides(monkeypatch, request):
    monkeypatch.setenv("PATCHBAY_METRICS_ALLOW", "192.0.2.0/28")
    monkeypatch.setenv("PATCHBAY_TRUSTED_PROXIES", "1")
    client = request.getfixturevalue("app").test_client()

    inside = client.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"})
    outside = client.get("/metrics", headers={"X-Forwarded-For": "192.0.2.77"})

    assert (inside.status_code, outside.status_code) == (200, 401)


def test_openmetrics_is_served_when_prometheus_asks_for_it(local_app):
    response = local_app.test_client().get("/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})

    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


@pytest.mark.parametrize("entry", ["not-an-address", "10.0.0.1/8", "300.1.2.3"])
def test_an_invalid_allow_list_entry_stops_the_app_from_starting(tmp_path, entry):
    from app import create_app

    with pytest.raises(RuntimeError, match=rf"PATCHBAY_METRICS_ALLOW: '{entry}' is not"):
        create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "test-secret",
                    "SQLALCHEMY_DATABASE_URI": fresh_database_url(tmp_path),
                    "ASYNC_MODE": "threading", "METRICS_ALLOW": f"127.0.0.1,{entry}"})


# -- SSH and sockets --------------------------------------------------------------------


def connect_failure(target: Target) -> dict[str, float]:
    before = in_process()
    session = SSHHostSession(target, connect_timeout=5)
    with pytest.raises(SSHError):
        session.connect()
    session.close()
    return moved(before, in_process())


def test_ssh_connect_failures_are_counted_by_kind(sshd_fleet, tmp_path):
    host = sshd_fleet.hosts[0]
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    stranger_key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger_key)],
                   check=True)

    def target(**changes: Any) -> Target:
        return Target(**{"name": "t", "address": host.address, "port": host.port,
                         "user": "root", "key_path": str(sshd_fleet.client_key),
                         "known_hosts": str(sshd_fleet.known_hosts), **changes})

    assert connect_failure(target(address="127.0.0.1", port=free_port())) == \
        {"patchbay_ssh_failures_total{reason=refused}": 1}
    assert connect_failure(target(known_hosts=str(empty_known_hosts))) == \
        {"patchbay_ssh_failures_total{reason=host_key}": 1}
    assert connect_failure(target(key_path=str(stranger_key))) == \
        {"patchbay_ssh_failures_total{reason=auth}": 1}


def test_open_sockets_are_a_gauge(app, auth, client):
    from extensions import socketio

    auth.create("vera", role="viewer")
    auth.login("vera")
    before = gauge("patchbay_socket_connections")

    sockets = [socket_test_client(app, client) for _ in range(2)]
    assert all(sock.is_connected() for sock in sockets)
    assert gauge("patchbay_socket_connections") == before + 2
    refused = socketio.test_client(app)  # anonymous: refused, never counted
    assert not refused.is_connected()
    for sock in sockets:
        sock.disconnect()

    assert gauge("patchbay_socket_connections") == before


def test_the_engine_and_its_metrics_import_without_flask():
    import sys

    code = ("import services.metrics, tasks.meters, tasks.transport.ssh, tasks.events.writer; "
            "import sys; "
            "assert 'flask' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

