"""Webhooks: admins register them (API and pages, the secret never shown again); a
job's events queue deliveries in the event writer's transaction; each node's sender
POSTs them, signed, to real HTTP receivers on 127.0.0.1, retries failures with backoff,
gives up after the deadline, and never lets a hanging receiver hold anything else up.
Two senders on one database never send the same attempt."""

from __future__ import annotations

import json
import logging
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import sessionmaker

from models import AuditEntry, Job, JobEvent, JobHost, Server, Webhook, WebhookDelivery, utcnow
from services.console import console_services
from services.webhooks import (
    PER_HOOK_IN_FLIGHT,
    DeliveryWorker,
    HookSpec,
    Outbox,
    Outcome,
    WebhookSettings,
    create_webhook,
    next_attempt,
    parse_hook,
    post,
    retry_delay,
    safe_url,
    sign,
)
from services.webhooks.address import AddressPolicy, PinnedHTTPSConnection
from tasks.engine import EngineSettings, JobEngine
from tasks.errors import PatchbayError
from tasks.events.writer import EventLog
from tasks.planning.runbook_files import parse_runbook
from tests.conftest import PASSWORD, write_inventory
from tests.support.engine_world import start_thread
from tests.support.fake_transport import FakeFleet, Script, lines
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres  # `make test` runs these again on PostgreSQL
PROJECT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-for-webhook-tests-0123456789"
PUBLIC_URL = "https://patchbay.example.com"
LOCAL = AddressPolicy.from_setting("127.0.0.0/8")  # the receivers listen on loopback
FAST = WebhookSettings(timeout=5, retry_base=0.05, retry_max=1, give_up_after=60,
                       concurrency=20, poll_interval=0.05, addresses=LOCAL)
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
""", "deploy.yml")


# -- a real HTTP receiver -------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 refuses connects from two busy senders


class Receiver:
    """A tiny ``http.server`` on 127.0.0.1 in a thread (over TLS with ``tls``). Every
    POST is recorded on arrival; each path answers 200 unless told otherwise:
    ``answer(path, 500, 500)`` scripts the next answers, ``default`` the ones after, and
    ``"hang"`` holds the request open until :meth:`release` (or the receiver closes)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.cond = threading.Condition()
        self.requests: list[Received] = []
        self.scripts: dict[str, list[int | str]] = {}
        self.defaults: dict[str, int | str] = {}
        self.hanging = 0
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.cond:
                    receiver.requests.append(Received(self.path, dict(self.headers), body,
                                                      time.monotonic()))
                    script = receiver.scripts.get(self.path)
                    answer = script.pop(0) if script else receiver.defaults.get(self.path, 200)
                    receiver.cond.notify_all()
                if answer == "hang":
                    with receiver.cond:
                        receiver.hanging += 1
                        receiver.cond.notify_all()
                    receiver.released.wait(120)
                    with receiver.cond:
                        receiver.hanging -= 1
                    answer = 200
                self.send_response(int(answer))
                self.send_header("Content-Type", "text/plain")
                text = b"ok" if int(answer) < 300 else b"receiver says no"
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer(self, path: str, *answers: int | str, default: int | str = 200) -> None:
        with self.cond:
            self.scripts[path] = list(answers)
            self.defaults[path] = default

    def received(self, path: str) -> list[Received]:
        with self.cond:
            return [r for r in self.requests if r.path == path]

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


# -- the world: the app's database, an engine with the outbox, senders ----------------


@pytest.fixture
def sessions(app) -> sessionmaker:
    from extensions import db

    with app.app_context():
        db.session.add_all(Server(name=f"h{i}", host=f"10.0.0.{i}", port=22, user="deploy")
                           for i in range(1, 7))
        db.session.commit()
        return sessionmaker(bind=db.engine, expire_on_commit=False)


@pytest.fixture
def fleet() -> Iterator[FakeFleet]:
    fleet = FakeFleet(kill_grace=0.2)
    yield fleet
    fleet.close()


@pytest.fixture
def engine(sessions, fleet) -> JobEngine:
    """A job engine whose event writer queues webhook deliveries (as ``create_app``
    wires it), on the fake fleet."""
    return JobEngine(
        db_sessions=sessions,
        events=EventLog(sessions, lambda *_: None, start_thread,
                        on_event=Outbox(PUBLIC_URL)),
        runbooks=lambda: {"deploy": DEPLOY},
        start_task=start_thread,
        settings=EngineSettings(kill_grace=0.2, reattach_timeout=2, flush_interval=0.02),
        transport=fleet.transport,
    )


@pytest.fixture
def senders(sessions) -> Iterator:
    """``senders(node_id, settings)`` starts a delivery worker; all stop after the test."""
    started: list[DeliveryWorker] = []

    def start(node_id: str = "node-a", settings: WebhookSettings = FAST,
              session_factory: sessionmaker | None = None, send=post) -> DeliveryWorker:
        worker = DeliveryWorker(session_factory or sessions, node_id, settings, start_thread,
                                send=send)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def add_hook(sessions: sessionmaker, url: str, events: tuple[str, ...] = ("job_started",
             "job_finished", "host_failed"), secret: str | None = SECRET,
             format_: str = "json") -> int:
    with sessions() as session, session.begin():
        return create_webhook(session, HookSpec(url, events, secret, format_), None).id


def run_job(engine: JobEngine, servers: list[str]) -> int:
    job_id = engine.start(engine.plan("deploy", {"build": "1.2"}, servers), None)
    wait_until(lambda: not engine.is_running_here(job_id), 30, "the job to finish")
    return job_id


def deliveries(sessions: sessionmaker, hook_id: int | None = None) -> list[WebhookDelivery]:
    with sessions() as session:
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if hook_id is not None:
            query = query.where(WebhookDelivery.webhook_id == hook_id)
        return list(session.scalars(query))


def all_delivered(sessions: sessionmaker, hook_id: int | None = None, count: int = 1):
    def check() -> bool:
        rows = deliveries(sessions, hook_id)
        return len(rows) >= count and all(row.status == "delivered" for row in rows)
    return check


def verifier() -> Any:
    """The verification snippet of docs/webhooks.md, as a receiver would paste it."""
    text = (PROJECT / "docs" / "webhooks.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S)
                if "def verify" in block)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace["verify"]


# -- the rules ------------------------------------------------------------------------


def test_the_webhook_module_imports_without_flask():
    code = ("import services.webhooks, tasks.events.writer; import sys; "
            "assert 'flask' not in sys.modules, sorted(m for m in sys.modules "
            "if m.startswith('flask'))")

    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr


def test_retries_wait_twice_as_long_each_time_up_to_the_cap_and_stop_at_the_deadline():
    from datetime import datetime, timedelta

    created = datetime(2026, 12, 2, 10, 0, 0)
    later = created + timedelta(minutes=30)
    almost = created + timedelta(seconds=3590)

    delays = [retry_delay(n, 10, 900) for n in range(1, 10)]

    assert delays == [10, 20, 40, 80, 160, 320, 640, 900, 900]
    assert retry_delay(10_000, 10, 900) == 900  # no overflow however long it failed
    schedule = dict(base=10, longest=900, give_up_after=3600)
    assert next_attempt(1, created, created, **schedule) == created + timedelta(seconds=10)
    assert next_attempt(9, later, created, **schedule) == later + timedelta(seconds=900)
    assert next_attempt(9, almost, created, **schedule) == created + timedelta(hours=1)
    assert next_attempt(10, created + timedelta(hours=1), created, **schedule) is None


@pytest.mark.parametrize(("payload", "field"), [
    ({"events": ["job_started"]}, "url"),
    ({"url": "ftp://example.com/x", "events": ["job_started"]}, "url"),
    ({"url": "https:///nohost", "events": ["job_started"]}, "url"),
    ({"url": "https://example.com:99999/", "events": ["job_started"]}, "url"),
    ({"url": "https://exa mple.com/", "events": ["job_started"]}, "url"),
    ({"url": "https://example.com/" + "a" * 2048, "events": ["job_started"]}, "url"),
    ({"url": "https://example.com/"}, "events"),
    ({"url": "https://example.com/", "events": []}, "events"),
    ({"url": "https://example.com/", "events": ["job_exploded"]}, "events"),
    ({"url": "https://example.com/", "events": "job_started"}, "events"),
    ({"url": "https://example.com/", "events": ["job_started"], "secret": "short"}, "secret"),
    ({"url": "https://example.com/", "events": ["job_started"], "secret": 12345678901234567},
     "secret"),
    ({"url": "https://example.com/", "events": ["job_started"], "format": "xml"}, "format"),
    ({"url": "https://example.com/", "events": ["job_started"], "colour": "red"}, "colour"),
])
def test_a_bad_webhook_is_refused_naming_the_field(payload, field):
    with pytest.raises(PatchbayError) as refused:
        parse_hook(payload)

    assert (refused.value.code, refused.value.field) == ("invalid", field)


def test_a_good_webhook_is_normalised_and_its_secret_kept_out_of_its_repr():
    spec = parse_hook({"url": " https://ci.example.com/hook?x=1 ", "secret": SECRET,
                       "events": ["host_failed", "job_started", "host_failed"]})

    assert spec.url == "https://ci.example.com/hook?x=1"
    assert spec.events == ("job_started", "host_failed")
    assert (spec.secret, spec.format) == (SECRET, "json")
    assert SECRET not in repr(spec)


def test_logs_and_the_audit_log_see_only_scheme_host_and_port():
    assert safe_url("https://hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com/…"
    assert safe_url("http://user:pw@10.1.2.3:8080/x?token=1") == "http://10.1.2.3:8080/…"
    assert safe_url("http://[::1]:9000") == "http://[::1]:9000/"


# -- registering: the API -------------------------------------------------------------


@pytest.fixture
def admin(auth, client):
    """The test client, logged in as an admin; its CSRF token in ``client.token``."""
    auth.create("root", role="admin")
    auth.login("root")
    page = client.get("/admin/webhooks").get_data(as_text=True)
    client.token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    return client


def test_an_admin_registers_lists_and_deletes_a_webhook_and_the_secret_never_comes_back(
        app, admin):
    headers = {"X-CSRFToken": admin.token}
    body = {"url": "https://ci.example.com/hooks/patchbay?token=abc", "secret": SECRET,
            "events": ["job_finished", "host_failed"]}

    created = admin.post("/api/webhooks", json=body, headers=headers)
    listed = admin.get("/api/webhooks")
    hook_id = created.get_json()["webhook"]["id"]
    log = admin.get(f"/api/webhooks/{hook_id}/deliveries")
    page = admin.get(f"/admin/webhooks/{hook_id}")
    deleted = admin.delete(f"/api/webhooks/{hook_id}", headers=headers)
    gone = admin.get(f"/api/webhooks/{hook_id}/deliveries")

    assert created.status_code == 201
    assert created.get_json() == {"ok": True, "webhook": {
        "id": hook_id, "url": body["url"], "events": ["job_finished", "host_failed"],
        "format": "json", "has_secret": True, "created_by": "root",
        "created_at": created.get_json()["webhook"]["created_at"]}}
    assert listed.get_json()["webhooks"] == [created.get_json()["webhook"]]
    assert log.get_json() == {"ok": True, "webhook": created.get_json()["webhook"],
                              "deliveries": []}
    assert deleted.status_code == 200 and deleted.get_json()["webhook"]["id"] == hook_id
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "not_found"
    with app.app_context():
        from extensions import db

        audit = db.session.scalars(select(AuditEntry).where(
            AuditEntry.action.startswith("webhook.")).order_by(AuditEntry.id)).all()
        assert [(e.action, e.target, e.detail["url"]) for e in audit] == [
            ("webhook.create", f"webhook #{hook_id}", "https://ci.example.com/…"),
            ("webhook.delete", f"webhook #{hook_id}", "https://ci.example.com/…")]
    for response in (created, listed, log, page, deleted):
        assert SECRET not in response.get_data(as_text=True)
    assert all(SECRET not in json.dumps(e.detail) for e in audit)


def test_bad_api_requests_get_clear_errors_and_change_nothing(app, admin, auth):
    headers = {"X-CSRFToken": admin.token}

    bad_url = admin.post("/api/webhooks", headers=headers,
                         json={"url": "file:///etc/passwd", "events": ["job_started"]})
    bad_events = admin.post("/api/webhooks", headers=headers,
                            json={"url": "https://x.example/", "events": ["boom"]})
    not_json = admin.post("/api/webhooks", headers=headers, data="url=x")
    no_csrf = admin.post("/api/webhooks", json={"url": "https://x.example/",
                                                "events": ["job_started"]})
    unknown = admin.delete("/api/webhooks/99", headers=headers)
    bad_limit = admin.get("/api/webhooks/99/deliveries?limit=0")

    assert (bad_url.status_code, bad_url.get_json()["error"]["field"]) == (400, "url")
    assert (bad_events.status_code, bad_events.get_json()["error"]["field"]) == (400, "events")
    assert "job_started" in bad_events.get_json()["error"]["message"]
    assert not_json.status_code == 400 and not_json.get_json()["ok"] is False
    assert (no_csrf.status_code, no_csrf.get_json()["error"]["code"]) == (400, "csrf")
    assert unknown.status_code == 404
    assert bad_limit.status_code == 404  # the webhook is looked up first
    assert admin.get("/api/webhooks").get_json()["webhooks"] == []


def test_operators_may_not_touch_webhooks(app, auth, client):
    auth.create("alice", role="operator")
    auth.login("alice")

    listed = client.get("/api/webhooks")
    page = client.get("/admin/webhooks")

    assert (listed.status_code, listed.get_json()["error"]["code"]) == (403, "forbidden")
    assert page.status_code == 403


# -- registering: the pages -----------------------------------------------------------


def test_the_page_adds_shows_and_deletes_a_webhook_without_showing_the_secret(app, admin):
    form = {"csrf_token": admin.token, "url": "https://chat.example.com/hooks/T1/B2/zzz",
            "events": ["job_finished", "host_failed"], "secret": SECRET, "format": "slack"}

    short = admin.post("/admin/webhooks", data={**form, "secret": "tiny-secret"})
    added = admin.post("/admin/webhooks", data=form, follow_redirects=True)
    listing = admin.get("/admin/webhooks").get_data(as_text=True)
    with app.app_context():
        from extensions import db

        hook = db.session.scalars(select(Webhook)).one()
        hook_id, stored = hook.id, (hook.secret, hook.events, hook.format)
    removed = admin.post(f"/admin/webhooks/{hook_id}/delete",
                         data={"csrf_token": admin.token}, follow_redirects=True)

    assert short.status_code == 400
    assert "secret must be 16 to 256 characters" in short.get_data(as_text=True)
    assert "tiny-secret" not in short.get_data(as_text=True)
    assert added.status_code == 200
    assert f"Webhook #{hook_id}" in added.get_data(as_text=True)
    assert "secret set" in added.get_data(as_text=True)
    assert f'data-webhook="{hook_id}"' in listing and "secret set" in listing
    assert stored == (SECRET, ["job_finished", "host_failed"], "slack")
    assert f"Webhook #{hook_id} deleted." in removed.get_data(as_text=True)
    assert "No webhooks yet." in removed.get_data(as_text=True)
    for response in (short, added, removed):
        assert SECRET not in response.get_data(as_text=True)
    assert SECRET not in listing


# -- queued with the event ------------------------------------------------------------


def test_a_delivery_is_queued_in_the_transaction_that_writes_its_event(sessions):
    hook = add_hook(sessions, "http://127.0.0.1:9/unused", ("job_started", "host_failed"))
    with sessions() as session, session.begin():
        mine, theirs = Job(runbook="deploy", node_id="node-a"), \
            Job(runbook="deploy", node_id="node-b")
        session.add_all([mine, theirs])
        session.flush()
        session.add(JobHost(job_id=mine.id, name="h1", status="running"))
        ids = mine.id, theirs.id
    log = EventLog(sessions, lambda *_: None, start_thread, node_id="node-a",
                   on_event=Outbox(PUBLIC_URL))
    for job_id in ids:
        log.open_job(job_id, None)
        log.append(job_id, "job_started", None, {"servers": ["h1"]})
    log.append(ids[0], "host_finished", "h1", {"status": "succeeded"})
    log.append(ids[0], "host_finished", "h1", {"status": "failed", "reason": "boom"})
    log.append(ids[0], "job_finished", None, {"status": "failed", "counts": {}})
    assert log.wait_written(10)

    rows = deliveries(sessions, hook)
    with sessions() as session:
        written = {(e.job_id, e.seq): e.type for e in session.scalars(select(JobEvent))}

    assert [(row.job_id, row.seq, row.event) for row in rows] == [
        (ids[0], 1, "job_started"), (ids[0], 3, "host_failed")]
    assert all(written[(row.job_id, row.seq)] in ("job_started", "host_finished")
               for row in rows)
    assert (ids[1], 1) not in written  # fenced: another node owns it, nothing written
    assert all((row.status, row.attempts) == ("pending", 0) for row in rows)
    assert json.loads(rows[1].body)["host"]["name"] == "h1"
    assert SECRET not in "".join(row.body for row in rows)


def test_a_rollback_s_payload_names_it_a_rollback_with_each_server_s_builds(sessions):
    everything = add_hook(sessions, "http://127.0.0.1:9/unused")
    chat = add_hook(sessions, "http://127.0.0.1:9/chat", ("job_started",), None, "slack")
    with sessions() as session, session.begin():
        job = Job(runbook="game-update", kind="rollback", node_id="node-a",
                  params={"version": "", "fast": "false"})
        session.add(job)
        session.flush()
        session.add_all([
            JobHost(job_id=job.id, name="gs-01", position=0, status="running",
                    from_version="1.4.8", to_version="1.4.7"),
            JobHost(job_id=job.id, name="gs-02", position=1, status="running",
                    from_version="1.4.9", to_version="1.4.8")])
        job_id = job.id
    log = EventLog(sessions, lambda *_: None, start_thread, node_id="node-a",
                   on_event=Outbox(PUBLIC_URL))
    log.open_job(job_id, None)
    log.append(job_id, "job_started", None, {"servers": ["gs-01", "gs-02"],
                                             "kind": "rollback", "steps": ["roll back"]})
    log.append(job_id, "host_finished", "gs-02", {"status": "failed", "reason": "boom"})
    assert log.wait_written(10)

    started, failed = (json.loads(row.body) for row in deliveries(sessions, everything))
    # The keys that were there stay; title, builds and builds_words are added.
    assert {key: started["job"][key] for key in ("runbook", "kind", "title", "builds",
                                                 "builds_words")} == {
        "runbook": "game-update", "kind": "rollback", "title": "Roll back (game-update)",
        "builds": [{"from": "1.4.8", "to": "1.4.7", "servers": ["gs-01"]},
                   {"from": "1.4.9", "to": "1.4.8", "servers": ["gs-02"]}],
        "builds_words": "1.4.8 → 1.4.7 (gs-01); 1.4.9 → 1.4.8 (gs-02)"}
    assert (failed["event"], failed["host"]["name"], failed["host"]["from_version"],
            failed["host"]["to_version"]) == ("host_failed", "gs-02", "1.4.9", "1.4.8")
    [message] = deliveries(sessions, chat)
    assert (f"<{PUBLIC_URL}/jobs/{job_id}|Job #{job_id} (Roll back (game-update): "
            f"1.4.8 → 1.4.7 (gs-01); 1.4.9 → 1.4.8 (gs-02))>") in json.loads(
        message.body)["text"]


def test_an_update_s_payload_keeps_its_title_and_has_no_builds(sessions):
    hook = add_hook(sessions, "http://127.0.0.1:9/unused", ("job_started",))
    with sessions() as session, session.begin():
        job = Job(runbook="deploy", node_id="node-a", params={"build": "1.2"})
        session.add(job)
        session.flush()
        job_id = job.id
    log = EventLog(sessions, lambda *_: None, start_thread, node_id="node-a",
                   on_event=Outbox(PUBLIC_URL))
    log.open_job(job_id, None)
    log.append(job_id, "job_started", None, {"servers": []})
    assert log.wait_written(10)
    [row] = deliveries(sessions, hook)
    sent = json.loads(row.body)["job"]
    assert (sent["title"], sent["builds"], sent["builds_words"]) == ("deploy", [], "")


# -- sending --------------------------------------------------------------------------


def test_a_job_s_events_arrive_signed_verifiable_and_shaped_as_documented(
        sessions, engine, fleet, receiver, senders):
    fleet.script("install-build", Script(lines("stderr", "disk full"), exit_code=3),
                 host="h2")
    everything = add_hook(sessions, receiver.url("/all"))
    chat = add_hook(sessions, receiver.url("/chat"), ("host_failed",), None, "slack")
    finished_only = add_hook(sessions, receiver.url("/done"), ("job_finished",), None)
    senders()

    job_id = run_job(engine, ["h1", "h2"])
    wait_until(all_delivered(sessions, count=5), 30, "five deliveries")

    verify = verifier()
    sent = {r.json["event"]: r for r in receiver.received("/all")}
    assert sorted(sent) == ["host_failed", "job_finished", "job_started"]
    for request in sent.values():
        assert verify(SECRET, request.body, request.headers["X-Patchbay-Signature"])
        assert not verify(SECRET, request.body + b" ", request.headers["X-Patchbay-Signature"])
        assert not verify("another-secret-0123456789", request.body,
                          request.headers["X-Patchbay-Signature"])
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Patchbay-Event"] == request.json["event"]
        assert request.headers["X-Patchbay-Delivery"] == request.json["delivery"]
        assert request.headers["X-Patchbay-Attempt"] == "1"
        assert request.json["url"] == f"{PUBLIC_URL}/jobs/{job_id}"
        assert request.json["job"]["id"] == job_id
        assert SECRET.encode() not in request.body
    started, failed, finished = (sent[n].json for n in ("job_started", "host_failed",
                                                        "job_finished"))
    assert set(finished) == {"event", "delivery", "job", "host", "data", "seq", "ts", "url"}
    assert (started["job"]["status"], started["data"]["servers"]) == ("running", ["h1", "h2"])
    assert (failed["host"]["name"], failed["host"]["status"], failed["host"]["failed_step"],
            failed["host"]["exit_code"]) == ("h2", "failed", "install", 3)
    assert failed["data"]["status"] == "failed"
    assert finished["job"]["status"] == "failed" and finished["job"]["finished_at"]
    assert finished["data"]["counts"] == {"succeeded": 1, "failed": 1}
    assert started["seq"] < failed["seq"] < finished["seq"]
    [chat_message] = receiver.received("/chat")
    assert set(chat_message.json) == {"text"}
    assert "server h2 failed at step install (exit 3)" in chat_message.json["text"]
    assert f"<{PUBLIC_URL}/jobs/{job_id}|Job #{job_id} (deploy)>" in chat_message.json["text"]
    assert "X-Patchbay-Signature" not in chat_message.headers
    [done] = receiver.received("/done")
    assert done.json["event"] == "job_finished"
    rows = deliveries(sessions)
    assert {(row.webhook_id, row.attempts, row.last_status_code) for row in rows} == {
        (everything, 1, 200), (chat, 1, 200), (finished_only, 1, 200)}
    assert all(row.delivered_at and row.claim is None for row in rows)


def test_a_delivery_is_retried_after_500_responses_with_the_same_id_and_body(
        sessions, engine, receiver, senders):
    receiver.answer("/flaky", 500, 503)
    hook = add_hook(sessions, receiver.url("/flaky"), ("job_started",))
    senders()

    run_job(engine, ["h1"])
    wait_until(all_delivered(sessions, hook), 30, "the delivery after two failures")

    tries = receiver.received("/flaky")
    [row] = deliveries(sessions, hook)
    assert [r.headers["X-Patchbay-Attempt"] for r in tries] == ["1", "2", "3"]
    assert len({r.headers["X-Patchbay-Delivery"] for r in tries}) == 1
    assert len({r.body for r in tries}) == 1
    assert all(verifier()(SECRET, r.body, r.headers["X-Patchbay-Signature"]) for r in tries)
    # backoff: base, then twice the base, at least
    assert tries[1].at - tries[0].at >= FAST.retry_base
    assert tries[2].at - tries[1].at >= 2 * FAST.retry_base
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == \
        ("delivered", 3, 200, None)


def test_a_delivery_that_keeps_failing_is_given_up_after_the_deadline(
        app, sessions, engine, receiver, senders, admin):
    receiver.answer("/down", default=500)
    hook = add_hook(sessions, receiver.url("/down"), ("job_started",))
    senders(settings=WebhookSettings(timeout=5, retry_base=0.05, retry_max=0.2,
                                     give_up_after=1.5, poll_interval=0.05,
                                     addresses=LOCAL))

    run_job(engine, ["h1"])
    wait_until(lambda: deliveries(sessions, hook)[0].status == "given_up", 30, "given up")

    [row] = deliveries(sessions, hook)
    tries = receiver.received("/down")
    page = admin.get(f"/admin/webhooks/{hook}").get_data(as_text=True)
    assert row.attempts == len(tries) >= 2
    assert (row.last_status_code, row.last_error) == (500, "HTTP 500 Internal Server Error")
    assert row.next_attempt_at is None and row.delivered_at is None
    assert f'data-delivery="{row.uid}" data-status="given_up"' in page
    assert "HTTP 500 Internal Server Error" in page
    api = admin.get(f"/api/webhooks/{hook}/deliveries").get_json()["deliveries"]
    assert [(d["status"], d["attempts"], d["status_code"]) for d in api] == \
        [("given_up", row.attempts, 500)]


def test_a_hanging_receiver_blocks_neither_the_engine_nor_other_webhooks(
        sessions, engine, fleet, receiver, senders):
    fleet.script("install-build", Script(exit_code=1))
    receiver.answer("/hangs", default="hang")
    hanging = add_hook(sessions, receiver.url("/hangs"))
    healthy = add_hook(sessions, receiver.url("/fine"))
    senders(settings=WebhookSettings(timeout=60, retry_base=0.05, concurrency=6,
                                     poll_interval=0.05, addresses=LOCAL))

    run_job(engine, [f"h{i}" for i in range(1, 7)])  # 1 + 6 failed servers + 1 = 8 each
    wait_until(all_delivered(sessions, healthy, 8), 30, "the healthy webhook's deliveries")

    wait_until(lambda: receiver.hanging == PER_HOOK_IN_FLIGHT, 10, "its requests held")
    stuck = deliveries(sessions, hanging)
    assert len(stuck) == 8
    assert sorted(row.status for row in stuck) == ["pending"] * 4 + ["sending"] * 4
    with receiver.cond:
        assert receiver.hanging == PER_HOOK_IN_FLIGHT  # only its own slots are held
    receiver.release()
    wait_until(all_delivered(sessions, hanging, 8), 30, "the hanging webhook, once released")


def test_an_attempt_that_times_out_is_recorded_and_retried(sessions, engine, receiver,
                                                          senders):
    receiver.answer("/slow", "hang")
    hook = add_hook(sessions, receiver.url("/slow"), ("job_started",))
    senders(settings=WebhookSettings(timeout=0.3, retry_base=0.05, poll_interval=0.05,
                                     addresses=LOCAL))

    run_job(engine, ["h1"])
    wait_until(all_delivered(sessions, hook), 30, "the retry after the timeout")

    [row] = deliveries(sessions, hook)
    assert (row.attempts, row.last_status_code) == (2, 200)
    assert len(receiver.received("/slow")) == 2


def test_two_nodes_never_send_the_same_attempt(app, sessions, receiver, senders):
    from extensions import db

    hooks = [add_hook(sessions, receiver.url(f"/n{i}"), ("job_started",)) for i in range(5)]
    with sessions() as session, session.begin():
        job = Job(runbook="deploy")
        session.add(job)
        session.flush()
        session.add_all(WebhookDelivery(webhook_id=hook, event="job_started", job_id=job.id,
                                        seq=1, body=json.dumps({"n": n}),
                                        next_attempt_at=job.created_at)
                        for hook in hooks for n in range(12))
    with app.app_context():
        url = db.engine.url
    other_node = create_engine(url)  # its own connections, as another process has
    try:
        senders("node-a")
        senders("node-b", session_factory=sessionmaker(bind=other_node,
                                                       expire_on_commit=False))
        wait_until(all_delivered(sessions, count=60), 30, "sixty deliveries")
    finally:
        other_node.dispose()

    ids = [r.headers["X-Patchbay-Delivery"] for r in receiver.requests]
    rows = deliveries(sessions)
    assert sorted(ids) == sorted(row.uid for row in rows)  # each exactly once
    assert {row.attempts for row in rows} == {1}


def test_claims_racing_from_two_nodes_never_overlap(app, sessions):
    from extensions import db

    hooks = [add_hook(sessions, f"http://127.0.0.1:9/{i}", ("job_started",)) for i in range(10)]
    with sessions() as session, session.begin():
        job = Job(runbook="deploy")
        session.add(job)
        session.flush()
        session.add_all(WebhookDelivery(webhook_id=hook, event="job_started", job_id=job.id,
                                        seq=1, body="{}", next_attempt_at=job.created_at)
                        for hook in hooks for _ in range(8))
    with app.app_context():
        url = db.engine.url
    other_node = create_engine(url)
    workers = [DeliveryWorker(factory, f"node-{i}", FAST, start_thread)
               for i, factory in enumerate([sessions, sessionmaker(bind=other_node)] * 3)]
    start = threading.Barrier(len(workers))
    claimed: list[int] = []
    lock = threading.Lock()

    def race(worker: DeliveryWorker) -> None:
        start.wait()
        for _ in range(10):
            got = worker.claim(7)
            with lock:
                claimed.extend(delivery.id for delivery in got)

    threads = [threading.Thread(target=race, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    other_node.dispose()

    assert len(claimed) == len(set(claimed)) == 80
    assert {row.attempts for row in deliveries(sessions)} == {1}


def test_a_lease_that_ran_out_goes_to_another_node_and_the_slow_node_records_nothing(
        sessions, receiver):
    hook = add_hook(sessions, receiver.url("/lease"), ("job_started",))
    with sessions() as session, session.begin():
        job = Job(runbook="deploy")
        session.add(job)
        session.flush()
        session.add(WebhookDelivery(webhook_id=hook, event="job_started", job_id=job.id,
                                    seq=1, body="{}", next_attempt_at=job.created_at))
    slow = DeliveryWorker(sessions, "node-slow", FAST, start_thread)
    other = DeliveryWorker(sessions, "node-b", FAST, start_thread)

    [held] = slow.claim(10)
    nothing = other.claim(10)  # still leased to the slow node
    with sessions() as session, session.begin():  # ... until its lease runs out
        session.execute(update(WebhookDelivery).values(next_attempt_at=job.created_at))
    [taken] = other.claim(10)
    refused = slow.record(held, Outcome(200))
    stored = other.record(taken, Outcome(200))

    [row] = deliveries(sessions, hook)
    assert (nothing, refused, stored) == ([], False, True)
    assert (held.attempts, taken.attempts) == (1, 2)
    assert (row.status, row.attempts, row.claimed_by) == ("delivered", 2, "node-b")
    assert sign(SECRET, b"{}") == held.headers("ua")["X-Patchbay-Signature"]
    assert SECRET not in repr(held)


# -- where deliveries may go (audit 3, item 4) -----------------------------------------


def queue(sessions: sessionmaker, hook_id: int, **values: Any) -> int:
    """One ``job_started`` delivery for ``hook_id``, due now (``values`` override)."""
    with sessions() as session, session.begin():
        job = Job(runbook="deploy")
        session.add(job)
        session.flush()
        row = WebhookDelivery(**{"webhook_id": hook_id, "event": "job_started",
                                 "job_id": job.id, "seq": 1, "body": "{}",
                                 "next_attempt_at": job.created_at, **values})
        session.add(row)
        session.flush()
        return row.id


def all_ended(sessions: sessionmaker, count: int):
    def check() -> list[WebhookDelivery]:
        rows = deliveries(sessions)
        return rows if len(rows) == count and all(
            row.status in ("delivered", "given_up") for row in rows) else []
    return check


def unallowed(**values: Any) -> WebhookSettings:
    """Fast settings with no network of the console's own allowed (the default)."""
    return WebhookSettings(**{"timeout": 5, "retry_base": 0.05, "poll_interval": 0.05,
                              **values})


@pytest.fixture
def local_app(monkeypatch, request):
    """The ``app`` fixture, built with ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8``."""
    monkeypatch.setenv("PATCHBAY_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
    return request.getfixturevalue("app")


REFUSED = ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "::127.0.0.1",
           "10.0.0.1", "172.16.5.4", "192.168.1.1", "::ffff:10.0.0.1", "169.254.169.254",
           "fe80::1", "fc00::1", "fd12:3456::1", "224.0.0.251", "ff02::1", "0.0.0.0", "::",
           "100.64.0.1", "240.0.0.1", "255.255.255.255", "2001:db8::1",
           "2002:7f00:1::1", "2002:a9fe:a9fe::1",  # 6to4 of 127.0.0.1, 169.254.169.254
           "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe"]  # NAT64 of the same
PUBLIC = ["93.184.215.14", "2606:4700::1111", "::ffff:93.184.215.14",
          "2002:5db8:d70e::1", "64:ff9b::5db8:d70e"]


def test_audit3_4_the_console_s_own_networks_are_refused_unless_allowed():
    public_only = AddressPolicy()
    local = AddressPolicy.from_setting("127.0.0.0/8, fc00::/7")

    refused = {text: public_only.refusal(ip_address(text)) for text in REFUSED}
    public = {text: public_only.refusal(ip_address(text)) for text in PUBLIC}

    assert all(refused.values()), [text for text, reason in refused.items() if not reason]
    assert public == dict.fromkeys(PUBLIC)
    assert refused["169.254.169.254"] == "a link-local address"
    assert refused["::ffff:127.0.0.1"] == "a loopback address (127.0.0.1 in IPv6 form)"
    assert [local.refusal(ip_address(text)) for text in
            ("127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "fd12:3456::1")] == [None] * 4
    assert local.refusal(ip_address("::1")) == "a loopback address"  # not in 127.0.0.0/8
    assert local.refusal(ip_address("10.0.0.1")) == "a private address"
    with pytest.raises(RuntimeError, match="PATCHBAY_WEBHOOK_ALLOW_NETWORKS: 'nonsense'"):
        AddressPolicy.from_setting("10.0.0.0/8, nonsense")


def test_audit3_4_a_webhook_to_an_internal_address_is_refused_when_saved_naming_the_url(
        app, admin):
    urls = ["http://127.0.0.1:5000/api/jobs", "http://localhost:9/hook", "http://[::1]:9/",
            "http://[::ffff:127.0.0.1]:9/", "http://169.254.169.254/latest/meta-data/",
            "https://10.1.2.3/x", "http://0.0.0.0:5000/", "http://2130706433:9/"]

    answers = [admin.post("/api/webhooks", headers={"X-CSRFToken": admin.token},
                          json={"url": url, "events": ["job_started"]}) for url in urls]
    page = admin.post("/admin/webhooks", data={
        "csrf_token": admin.token, "url": "http://localhost:9/hook",
        "events": ["job_started"], "format": "json"})

    for url, answer in zip(urls, answers, strict=True):
        error = answer.get_json()["error"]
        assert (answer.status_code, error["code"], error["field"]) == (400, "invalid", "url"), \
            url
        assert error["message"].startswith("url refused: ") and \
            "PATCHBAY_WEBHOOK_ALLOW_NETWORKS" in error["message"], error
    assert "localhost resolves to 127.0.0.1, a loopback address" in \
        answers[1].get_json()["error"]["message"]
    assert "169.254.169.254 is a link-local address" in \
        answers[4].get_json()["error"]["message"]
    assert page.status_code == 400
    assert "localhost resolves to 127.0.0.1, a loopback address" in page.get_data(as_text=True)
    assert admin.get("/api/webhooks").get_json()["webhooks"] == []


def test_audit3_4_with_loopback_allowed_a_local_receiver_is_saved_and_delivered(
        local_app, admin, sessions, receiver):
    worker = console_services(local_app).webhooks  # the factory's sender

    created = admin.post("/api/webhooks", headers={"X-CSRFToken": admin.token},
                         json={"url": receiver.url("/allowed"), "events": ["job_started"]})
    refused = admin.post("/api/webhooks", headers={"X-CSRFToken": admin.token},
                         json={"url": "http://[::1]:9/", "events": ["job_started"]})
    queue(sessions, created.get_json()["webhook"]["id"])
    worker.start()
    try:
        wait_until(all_delivered(sessions), 30, "the delivery to the allowed network")
    finally:
        worker.stop()

    assert created.status_code == 201
    assert refused.status_code == 400  # ::1 is not in 127.0.0.0/8
    assert len(receiver.received("/allowed")) == 1


def test_audit3_4_a_delivery_to_a_refused_address_ends_given_up_without_connecting(
        sessions, receiver, senders):
    port = receiver.server.server_address[1]
    for url in (receiver.url("/direct"), f"http://localhost:{port}/named",
                f"http://[::ffff:127.0.0.1]:{port}/mapped"):
        queue(sessions, add_hook(sessions, url, ("job_started",)))  # saved when allowed
    senders(settings=unallowed())

    rows = wait_until(all_ended(sessions, 3), 30, "the three deliveries to end")

    assert [(row.status, row.attempts, row.last_status_code) for row in rows] == \
        [("given_up", 1, None)] * 3
    assert rows[0].last_error == (
        "refused: 127.0.0.1 is a loopback address: webhooks may not reach the console's "
        "own networks unless PATCHBAY_WEBHOOK_ALLOW_NETWORKS allows them")
    assert "localhost resolves to 127.0.0.1, a loopback address" in rows[1].last_error
    assert "a loopback address (127.0.0.1 in IPv6 form)" in rows[2].last_error
    assert receiver.requests == []


def test_audit3_4_a_name_is_resolved_once_checked_and_connected_to_at_that_address(
        sessions, receiver, senders, monkeypatch):
    """DNS rebinding: the first answer is checked; any later lookup would get the
    metadata address. The delivery goes where the checked answer said."""
    real, lookups = socket.getaddrinfo, []

    def resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
        if host != "hooks.example.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "169.254.169.254"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    port = receiver.server.server_address[1]
    refused_hook = add_hook(sessions, f"http://hooks.example.test:{port}/refused")
    queue(sessions, refused_hook)
    refusing = senders("node-a", unallowed())
    [refused] = wait_until(all_ended(sessions, 1), 30, "the refused delivery")
    refusing.stop()
    lookups.clear()
    allowed_hook = add_hook(sessions, f"http://hooks.example.test:{port}/pinned")
    queue(sessions, allowed_hook)
    senders("node-b", FAST)

    wait_until(all_delivered(sessions, allowed_hook), 30, "the pinned delivery")

    [request] = receiver.received("/pinned")
    assert (refused.status, refused.last_error.split(",")[0]) == \
        ("given_up", "refused: hooks.example.test resolves to 127.0.0.1")
    assert lookups == ["hooks.example.test"]  # once, not again to connect
    assert request.headers["Host"] == f"hooks.example.test:{port}"
    assert receiver.received("/refused") == []


def self_signed(name: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for ``name`` (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_audit3_4_https_goes_to_the_checked_address_with_sni_and_the_certificate_of_the_name(
        tmp_path):
    cert, key = self_signed("hooks.example.test", tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_side.sni_callback = lambda _sock, name, _context: names.append(name)
    receiver = Receiver(tls=server_side)
    port = receiver.server.server_address[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        good = PinnedHTTPSConnection("hooks.example.test", port, ["127.0.0.1"], 5, trusting)
        good.request("POST", "/tls", body=b"{}")
        status = good.getresponse().status
        good.close()
        other = PinnedHTTPSConnection("other.example.test", port, ["127.0.0.1"], 5, trusting)
        with pytest.raises(ssl.SSLCertVerificationError, match="other.example.test"):
            other.request("POST", "/tls", body=b"{}")
        other.close()
        [request] = receiver.received("/tls")
    finally:
        receiver.close()

    assert status == 200
    assert names == ["hooks.example.test", "other.example.test"]
    assert request.headers["Host"] == f"hooks.example.test:{port}"


class _Banner(socketserver.BaseRequestHandler):
    """Not HTTP: answers any request with an SSH-like banner, as a local sshd would."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"SSH-2.0-OpenSSH_9.2 internal-banner-7f3a\r\n")


def test_audit3_4_a_receiver_s_answer_is_kept_as_its_status_line_only(
        sessions, receiver, senders, caplog, monkeypatch):
    webhook_log = logging.getLogger("services.webhooks")
    webhook_log.addHandler(caplog.handler)
    receiver.answer("/no", default=500)  # with the body "receiver says no"
    banner = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Banner)
    threading.Thread(target=banner.serve_forever, daemon=True).start()
    long_ago = utcnow() - timedelta(hours=2)  # past the deadline: one attempt each
    try:
        queue(sessions, add_hook(sessions, receiver.url("/no")), created_at=long_ago)
        queue(sessions, add_hook(sessions, f"http://127.0.0.1:{banner.server_address[1]}/"),
              created_at=long_ago)
        senders()
        http_error, not_http = wait_until(all_ended(sessions, 2), 30, "both given up")
    finally:
        banner.shutdown()
        banner.server_close()
        webhook_log.removeHandler(caplog.handler)

    assert (http_error.status, http_error.last_status_code, http_error.last_error) == \
        ("given_up", 500, "HTTP 500 Internal Server Error")
    assert (not_http.status, not_http.last_error) == \
        ("given_up", "BadStatusLine: the answer is not valid HTTP")
    assert "receiver says no" not in caplog.text and "internal-banner" not in caplog.text
    assert "HTTP 500 Internal Server Error" in caplog.text


def test_audit3_4_a_url_s_user_name_and_password_are_masked_on_every_page_and_answer(
        app, admin):
    headers = {"X-CSRFToken": admin.token}
    url = "https://deploy-bot:hunter2-Secret@ci.example.com/hooks/x?token=t"

    created = admin.post("/api/webhooks", headers=headers,
                         json={"url": url, "events": ["job_started"]})
    hook_id = created.get_json()["webhook"]["id"]
    shown = [created, admin.get("/api/webhooks"), admin.get(f"/api/webhooks/{hook_id}/deliveries"),
             admin.get("/admin/webhooks"), admin.get(f"/admin/webhooks/{hook_id}")]
    with app.app_context():
        from extensions import db

        stored = db.session.get(Webhook, hook_id).url
    shown.append(admin.delete(f"/api/webhooks/{hook_id}", headers=headers))

    assert created.get_json()["webhook"]["url"] == \
        "https://***@ci.example.com/hooks/x?token=t"
    assert stored == url  # kept: it is sent as Basic authentication
    for number, answer in enumerate(shown):
        text = answer.get_data(as_text=True)
        assert "hunter2-Secret" not in text and "deploy-bot" not in text, number
    assert "https://***@ci.example.com/hooks/x?token=t" in shown[4].get_data(as_text=True)


# -- every delivery ends (audit 3b, item 9) --------------------------------------------


def test_audit3b_9_a_url_is_stored_with_an_idna_host_and_a_percent_encoded_path():
    spec = parse_hook({"url": "https://Bücher.Example/pfad/ü/straße?q=ä&x=%20#part",
                       "events": ["job_started"]})
    again = parse_hook({"url": spec.url, "events": ["job_started"]})

    assert spec.url == \
        "https://xn--bcher-kva.example/pfad/%C3%BC/stra%C3%9Fe?q=%C3%A4&x=%20"
    assert again.url == spec.url  # encoding twice changes nothing
    assert spec.url.isascii()
    for bad in ("http://[::1/", "http://[::1x]/", "https://a..b/", "https://" + "a" * 64 + "/",
                "https://exa$mple.com/", "https://\u2488.example/"):
        with pytest.raises(PatchbayError) as refused:
            parse_hook({"url": bad, "events": ["job_started"]})
        assert (refused.value.code, refused.value.field) == ("invalid", "url"), bad


def test_audit3b_9_stuck_deliveries_with_odd_urls_end_delivered_or_given_up(
        sessions, receiver, senders):
    """Rows saved before URLs were checked and encoded, left ``sending`` by a sender
    that crashed on them: their lease ran out long ago."""
    stuck = {"status": "sending", "claim": "f" * 32, "claimed_by": "node-gone",
             "attempts": 7, "created_at": utcnow() - timedelta(hours=2),
             "next_attempt_at": utcnow() - timedelta(seconds=1)}
    queue(sessions, add_hook(sessions, receiver.url("/ü/straße")), **stuck)
    queue(sessions, add_hook(sessions, "http://[::1/"), **stuck)
    senders()

    encoded, broken = wait_until(all_ended(sessions, 2), 30, "both stuck deliveries to end")

    assert (encoded.status, encoded.attempts, encoded.last_status_code) == \
        ("delivered", 8, 200)
    assert len(receiver.received("/%C3%BC/stra%C3%9Fe")) == 1
    assert (broken.status, broken.attempts) == ("given_up", 8)
    assert broken.last_error.startswith("invalid url: url is not a valid address")


def test_audit3b_9_a_sender_that_fails_unexpectedly_ends_the_delivery_with_a_reason(
        sessions, senders):
    def explode(*_: Any) -> Outcome:
        raise UnicodeEncodeError("ascii", "ü", 0, 1, "ordinal not in range(128)")

    queue(sessions, add_hook(sessions, "http://127.0.0.1:9/x"))
    senders(settings=unallowed(retry_max=0.1, give_up_after=0.5), send=explode)

    [row] = wait_until(all_ended(sessions, 1), 30, "the delivery to end")

    assert (row.status, row.next_attempt_at, row.claim) == ("given_up", None, None)
    assert row.attempts >= 2  # retried until the deadline, like any failure
    assert row.last_error == "internal error: UnicodeEncodeError (see the log)"


# -- a real server process ------------------------------------------------------------


@pytest.mark.live
@pytest.mark.sshd
@pytest.mark.asyncmode  # `make test-gevent` runs the console under gevent too
def test_a_real_console_posts_a_rollout_s_events_to_a_registered_webhook(
        live_server_factory, sshd_fleet, tmp_path, receiver):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    server = live_server_factory(inventory=inventory, users=[("root", PASSWORD, "admin")],
                                 env={"PATCHBAY_PUBLIC_URL": PUBLIC_URL,
                                      "PATCHBAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                                      "PATCHBAY_WEBHOOK_POLL_INTERVAL": "0.1",
                                      "PATCHBAY_WEBHOOK_RETRY_BASE": "0.1"})
    receiver.answer("/live", 500)  # the first attempt fails: the node retries
    http = server.login("root")

    created = http.post(f"{server.url}/api/webhooks", timeout=10, json={
        "url": receiver.url("/live"), "events": ["job_started", "job_finished",
                                                  "host_failed"], "secret": SECRET})
    started = http.post(f"{server.url}/api/jobs", timeout=10, json={
        "runbook": "basic", "params": {"message": "hi", "fail_on": "h02"},
        "servers": ["h01", "h02"]})
    hook_id, job_id = created.json()["webhook"]["id"], started.json()["job_id"]

    def delivered() -> list[dict]:
        log = http.get(f"{server.url}/api/webhooks/{hook_id}/deliveries", timeout=10).json()
        rows = log["deliveries"]
        return rows if len(rows) == 3 and all(d["status"] == "delivered" for d in rows) \
            else []

    rows = wait_until(delivered, 60, "three deliveries")
    verify = verifier()
    bodies = [r for r in receiver.received("/live")
              if verify(SECRET, r.body, r.headers["X-Patchbay-Signature"])]
    assert created.status_code == 201 and started.status_code == 201
    assert len(bodies) == len(receiver.received("/live")) == 4  # one retried
    assert {r.json["event"] for r in bodies} == {"job_started", "host_failed", "job_finished"}
    assert {r.json["job"]["id"] for r in bodies} == {job_id}
    assert [r.json["host"]["name"] for r in bodies if r.json["event"] == "host_failed"] == \
        ["h02"]
    assert sorted(d["attempts"] for d in rows) == [1, 1, 2]
    assert SECRET not in server.log()
