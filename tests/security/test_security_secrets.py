"""Issue #12, finding 3 ("Secrets reach viewers"): a secret runbook parameter or a
secret inventory variable reaches the server's command and nothing else. Events, job
rows, plans, pages, the API, downloads, the audit log, webhooks and the server log show
it as ``••••``; what a console must keep to resume or re-run a job is stored sealed
with a key derived from its SECRET_KEY.

First the pieces (sealing, masking, rendering), then the engine over the in-memory
fleet (resume and re-run, a changed key), then a real console over real sshd servers.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect
from sqlalchemy import create_engine, inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models import Job, JobHost, Server
from tasks.engine import EngineSettings, JobEngine
from tasks.errors import PatchbayError
from tasks.events.writer import EventLog
from tasks.planning.adhoc import CommandRunbook
from tasks.planning.rendered_steps import HostContext
from tasks.planning.runbook_files import parse_runbook
from tasks.planning.secrets import MASK, Masker, SecretBox, SecretUnreadable
from tasks.running import server_run
from tasks.running.output import HostOutput
from tasks.transport.step_output import MAX_LINE_BYTES, LineSplitter
from tests.conftest import PASSWORD
from tests.support.console_world import log_in, query_db, rendered_logs, runbook_dir
from tests.support.engine_world import EngineWorld, engine_database, start_thread
from tests.support.fake_transport import FakeFleet, Script, lines
from tests.support.sshd_fleet import free_port
from tests.support.waiting import wait_until

PARAM_SECRET = "hunter2-param-7f3a9c"
VAR_SECRET = "rcon-var-52d1e0aa"
ENV_SECRET = "envtoken-91b2d4e8"
SECRETS = (PARAM_SECRET, VAR_SECRET, ENV_SECRET)
ENV_NAME = "PB_TEST_SECRET_TOKEN"

SECRETIVE = """\
name: secretive
description: Uses a secret parameter and secret variables, and echoes them.
params:
  password:
    secret: true
    pattern: '^[A-Za-z0-9][A-Za-z0-9-]{7,63}$'
  label:
    pattern: '^[a-z]{1,10}$'
    default: blue
steps:
  - name: use
    run: use {{ params.label }} {{ params.password }} {{ vars.token }} {{ vars.rcon }}
  - name: report
    run: report
    capture: said
"""


def assert_no_secret(where: str, content: str | bytes) -> None:
    for secret in SECRETS:
        needle = secret.encode() if isinstance(content, bytes) else secret
        assert needle not in content, f"{secret!r} reached {where}"


# -- the pieces ------------------------------------------------------------------------


def test_finding_3_sealed_values_open_only_with_the_same_secret_key():
    box = SecretBox("console-key")
    token = box.seal({"password": PARAM_SECRET})

    assert PARAM_SECRET not in token
    assert SecretBox("console-key").open(token) == {"password": PARAM_SECRET}
    with pytest.raises(SecretUnreadable) as caught:
        SecretBox("another-key").open(token, "job #4's parameters")
    assert caught.value.code == "invalid"
    assert caught.value.message.startswith("job #4's parameters cannot be decrypted")
    assert "SECRET_KEY" in caught.value.message
    assert "console-key" not in repr(box)


def test_finding_3_output_masking_replaces_every_value_of_four_characters_or_more():
    mask = Masker(["abc", "secret", "secret-longer", ""])

    assert mask("x secret-longer y secret z abc") == f"x {MASK} y {MASK} z abc"
    assert not Masker(["abc"])


def test_finding_3_a_secret_param_and_var_are_masked_in_the_shown_command():
    book = parse_runbook(SECRETIVE, "secretive.yml")
    host = HostContext("gs-01", "10.0.0.1", 22, "deploy",
                       {"token": ENV_SECRET, "rcon": VAR_SECRET}, frozenset({"token", "rcon"}))

    step = book.render(book.validate_params({"password": PARAM_SECRET}), host)[0]

    assert step.command == f"use blue {PARAM_SECRET} {ENV_SECRET} {VAR_SECRET}"
    assert step.shown == f"use blue {MASK} {MASK} {MASK}"


def test_finding_3_a_secret_param_is_described_and_refused_without_its_value():
    book = parse_runbook(SECRETIVE.replace("    secret: true\n",
                                           "    secret: true\n    default: s3cret-default\n"),
                         "secretive.yml")

    described = book.describe()["params"]["password"]
    with pytest.raises(PatchbayError) as caught:
        book.validate_params({"password": "no spaces allowed"})

    assert (described["secret"], described["default"]) == (True, MASK)
    assert caught.value.field == "params.password"
    assert "no spaces allowed" not in caught.value.message


def test_finding_3_a_step_using_an_unset_environment_variable_is_refused_by_name():
    book = parse_runbook(SECRETIVE, "secretive.yml")
    host = HostContext("gs-01", "10.0.0.1", 22, "deploy", {"rcon": VAR_SECRET},
                       frozenset({"token", "rcon"}),
                       {"token": f"server gs-01 variable 'token' reads the environment "
                                 f"variable {ENV_NAME}, which is not set"})

    with pytest.raises(PatchbayError) as caught:
        book.render(book.validate_params({"password": PARAM_SECRET}), host)

    assert caught.value.field == "servers"
    assert "gs-01" in caught.value.message and ENV_NAME in caught.value.message
    assert "'token'" in caught.value.message and "step 'use'" in caught.value.message


def test_finding_3_an_adhoc_command_is_shown_as_typed_unless_it_holds_a_secret():
    host = HostContext("gs-01", "10.0.0.1", 22, "deploy", {"rcon": VAR_SECRET},
                       frozenset({"rcon"}))
    adhoc = CommandRunbook()

    plain = adhoc.render({"command": "uptime"}, host)[0]
    typed = adhoc.render({"command": f"rcon -p {VAR_SECRET} status"}, host)[0]

    assert (plain.command, plain.shown) == ("uptime", "uptime")
    assert typed.command == f"rcon -p {VAR_SECRET} status"
    assert typed.shown == f"rcon -p {MASK} status"


def test_finding_3_output_lines_and_captured_facts_are_masked_before_they_are_events():
    appended: list[dict[str, Any]] = []

    class Log:
        def append(self, job_id: int, type_: str, host: str | None, data: dict) -> int:
            appended.append(data)
            return len(appended)

    output = HostOutput(Log(), 1, "gs-01", "use", 10, 500,
                        mask=Masker([PARAM_SECRET, ENV_SECRET]))
    output.line("stdout", f"password={PARAM_SECRET} token={ENV_SECRET}", 50)
    output.flush()

    assert appended == [{"stream": "stdout", "step": "use", "offset": 50,
                         "lines": [f"password={MASK} token={MASK}"]}]
    assert output.last_stdout_line == f"password={MASK} token={MASK}"


# -- the engine over the in-memory fleet ---------------------------------------------


HOSTS = ["h1", "h2"]


@pytest.fixture
def fleet():
    fleet = FakeFleet(kill_grace=0.2)
    fleet.script("use ", Script(lines("stdout", f"password={PARAM_SECRET}",
                                      f"token={ENV_SECRET} rcon={VAR_SECRET}")))
    fleet.script("report", Script(lines("stdout", f"said {PARAM_SECRET}")))
    yield fleet
    fleet.close()


@pytest.fixture
def database(tmp_path: Path) -> str:
    """Two servers whose ``rcon`` is sealed with "console-key" and whose ``token``
    comes from the environment."""
    url = engine_database(tmp_path, HOSTS)
    db = create_engine(url)
    with Session(db) as session:
        session.execute(update(Server).values(vars={
            "token": {"env": ENV_NAME},
            "rcon": {"$sealed": SecretBox("console-key").seal(VAR_SECRET)}}))
        session.commit()
    db.dispose()
    return url


@pytest.fixture
def make_world(database, fleet, monkeypatch):
    """Engines on the test's database, each its own "process" with its own key."""
    monkeypatch.setattr(server_run, "RECONNECT_FIRST_DELAY", 0.05)
    monkeypatch.setenv(ENV_NAME, ENV_SECRET)
    built: list[tuple[JobEngine, Any]] = []

    def make(key: str = "console-key", transport=None) -> EngineWorld:
        db = create_engine(database)
        sessions = sessionmaker(bind=db, expire_on_commit=False)
        published: list[dict[str, Any]] = []
        engine = JobEngine(
            db_sessions=sessions,
            events=EventLog(sessions, lambda job_id, owner, events: published.extend(events),
                            start_thread),
            runbooks=lambda: {"secretive": parse_runbook(SECRETIVE, "secretive.yml")},
            start_task=start_thread,
            settings=EngineSettings(kill_grace=0.2, reattach_timeout=2, flush_interval=0.02),
            transport=transport or fleet.transport, secrets=SecretBox(key))
        built.append((engine, db))
        return EngineWorld(engine, sessions, published)

    yield make
    for engine, db in built:
        for run in list(engine._running.values()):
            run.finished.set()
        db.dispose()


def stored_text(world: EngineWorld, job_id: int) -> str:
    """Everything stored of a job, as text: its row, its servers' rows, its events."""
    with world.sessions() as session:
        job = session.get(Job, job_id)
        rows = [{"params": job.params}] + [
            {"plan": h.plan, "reason": h.reason} for h in job.hosts]
    return json.dumps(rows + world.events(job_id), ensure_ascii=False)


def start(world: EngineWorld, servers: list[str] = HOSTS) -> int:
    plan = world.engine.plan("secretive", {"password": PARAM_SECRET}, servers)
    return world.engine.start(plan, None)


def test_finding_3_the_engine_sends_real_values_and_stores_only_masked_or_sealed_ones(
        make_world, fleet):
    world = make_world()

    preview = world.engine.plan("secretive", {"password": PARAM_SECRET}, HOSTS).preview()
    job = world.wait_finished(start(world), timeout=10)

    stored = stored_text(world, job.id)
    assert_no_secret("the plan preview", json.dumps(preview, ensure_ascii=False))
    assert_no_secret("the stored job", stored)
    assert_no_secret("the published events", json.dumps(world.published, ensure_ascii=False))
    assert job.status == "succeeded" and job.params == {"password": MASK, "label": "blue"}
    for host in HOSTS:
        assert fleet.started(host)[0] == f"use blue {PARAM_SECRET} {ENV_SECRET} {VAR_SECRET}"
    assert f"use blue {MASK} {MASK} {MASK}" in stored
    assert f"token={MASK} rcon={MASK}" in stored
    assert f'"facts": {{"said": "said {MASK}"}}' in stored


def test_finding_3_a_restarted_console_resumes_a_secret_job_with_the_real_values(
        make_world, fleet):
    hold = threading.Event()
    fleet.script("use ", Script([*lines("stdout", "holding"), hold]))
    console = fleet.console()
    first = make_world(transport=console.transport)
    job_id = start(first, ["h1"])
    first.wait_for(job_id, lambda events: any(e["type"] == "output" for e in events))
    console.crash()
    assert first.engine.events.wait_written(5)

    second = make_world()  # the same SECRET_KEY: another process, or another node
    assert second.engine.resume_owned_jobs() == [job_id]
    wait_until(lambda: fleet.calls_of("attach", "h1"), 5, "h1 re-attached")
    hold.set()
    job = second.wait_finished(job_id, timeout=10)

    assert job.status == "succeeded"
    assert fleet.started("h1") == [f"use blue {PARAM_SECRET} {ENV_SECRET} {VAR_SECRET}",
                                   "report"]
    assert_no_secret("the stored job", stored_text(second, job_id))


def test_finding_3_a_console_with_another_secret_key_interrupts_instead_of_crashing(
        make_world, fleet):
    fleet.script("use ", Script([*lines("stdout", "holding"), threading.Event()]))
    console = fleet.console()
    first = make_world(transport=console.transport)
    job_id = start(first, ["h1"])
    first.wait_for(job_id, lambda events: any(e["type"] == "output" for e in events))
    console.crash()
    assert first.engine.events.wait_written(5)

    other = make_world(key="a-new-key")
    other.engine.resume_owned_jobs()
    job = other.wait_finished(job_id, timeout=10)
    with pytest.raises(PatchbayError) as refused:
        other.engine.rerun_plan(job_id)

    assert (job.status, job.hosts[0].status) == ("interrupted", "interrupted")
    assert "cannot be decrypted" in job.hosts[0].reason
    assert "SECRET_KEY" in job.hosts[0].reason
    assert refused.value.field == "job_id"
    assert refused.value.message.startswith(f"job #{job_id} cannot be re-run:")
    assert "SECRET_KEY" in refused.value.message


def test_finding_3_a_rerun_of_a_failed_secret_job_uses_the_real_parameter(make_world, fleet):
    world = make_world()
    fleet.script("use ", Script(lines("stderr", "not yet"), exit_code=3), host="h2")
    failed = world.wait_finished(start(world), timeout=10)
    fleet.script("use ", Script(lines("stdout", "fine now")), host="h2")

    rerun = world.engine.start(world.engine.rerun_plan(failed.id), None, rerun_of=failed.id)
    job = world.wait_finished(rerun, timeout=10)

    assert (failed.status, job.status) == ("failed", "succeeded")
    assert [h.name for h in job.hosts] == ["h2"]
    assert fleet.started("h2")[-2:] == [
        f"use blue {PARAM_SECRET} {ENV_SECRET} {VAR_SECRET}", "report"]
    assert job.params == {"password": MASK, "label": "blue"}
    assert_no_secret("the re-run job", stored_text(world, rerun))


def test_finding_3_an_unset_environment_variable_refuses_the_plan_clearly(
        make_world, monkeypatch):
    world = make_world()
    monkeypatch.delenv(ENV_NAME)

    with pytest.raises(PatchbayError) as caught:
        world.engine.plan("secretive", {"password": PARAM_SECRET}, HOSTS)

    assert caught.value.message.startswith(
        f"server h1 variable 'token' reads the environment variable {ENV_NAME}, "
        "which is not set in the console's environment")


def test_finding_3_an_adhoc_command_typed_with_a_secret_runs_as_typed_and_shows_masked(
        make_world, fleet):
    world = make_world()
    command = f"echo {ENV_SECRET} > /tmp/x; rcon -p {VAR_SECRET} status"

    plan = world.engine.plan(CommandRunbook(), {"command": command}, HOSTS)
    job = world.wait_finished(world.engine.start(plan, None), timeout=10)

    assert fleet.started("h1") == [command]
    assert job.params == {"command": f"echo {MASK} > /tmp/x; rcon -p {MASK} status"}
    assert_no_secret("the ad-hoc job", stored_text(world, job.id))


def test_finding_3_stored_rows_hold_sealed_tokens_not_values(make_world):
    world = make_world()
    job_id = world.engine.start(
        world.engine.plan("secretive", {"password": PARAM_SECRET}, ["h1"]), None)
    world.wait_finished(job_id, timeout=10)

    with world.sessions() as session:
        plan = session.scalar(select(JobHost.plan).where(JobHost.job_id == job_id))
    hidden = SecretBox("console-key").open(plan["sealed"])

    assert plan["steps"][0]["command"] == f"use blue {MASK} {MASK} {MASK}"
    assert hidden["steps"] == [f"use blue {PARAM_SECRET} {ENV_SECRET} {VAR_SECRET}", None]
    assert hidden["params"] == {"password": PARAM_SECRET, "label": "blue"}
    assert sorted(hidden["secrets"]) == sorted(SECRETS)


# -- a real console over real sshd servers ---------------------------------------------


LIVE_RUNBOOK = """\
name: secretive
description: Echoes a secret parameter and a secret variable, and hands them over.
params:
  password:
    secret: true
    pattern: '^[A-Za-z0-9][A-Za-z0-9-]{7,63}$'
steps:
  - name: use
    run: |
      echo password={{ params.password }} token={{ vars.token }}
      printf '%s %s\\n' {{ params.password }} {{ vars.token }} > {{ vars.root }}/received
    capture: said
"""

HELD_RUNBOOK = """\
name: held-secret
description: Waits for a release file, then hands the secrets over; fails without allow.
params:
  password:
    secret: true
    pattern: '^[A-Za-z0-9][A-Za-z0-9-]{7,63}$'
steps:
  - name: hold
    run: |
      echo holding with {{ params.password }}
      while [ ! -e {{ vars.root }}/release ]; do sleep 0.05; done
  - name: hand over
    run: |
      [ -e {{ vars.root }}/allow ] || { echo not allowed: {{ vars.token }} >&2; exit 3; }
      printf '%s %s\\n' {{ params.password }} {{ vars.token }} > {{ vars.root }}/received
"""


class Receiver(http.server.ThreadingHTTPServer):
    """Webhook bodies POSTed to it, as received."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


def secret_console(live_server_factory, sshd_fleet, tmp_path: Path, runbook: str):
    """A console (alice: admin) on two sshd hosts whose ``token`` comes from the
    console's environment through the inventory's ``defaults``."""
    books = runbook_dir(tmp_path)
    (books / "secret.yml").write_text(runbook)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({
        "defaults": {"vars": {"token": {"env": ENV_NAME}}},
        "servers": sshd_fleet.inventory_entries()[:2]}))
    return live_server_factory(inventory=inventory, runbook_dir=books,
                               users=[("alice", PASSWORD, "admin")],
                               env={ENV_NAME: ENV_SECRET,
                                    # the webhook receiver listens on loopback
                                    "PATCHBAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"})


def finished(server, http, job_id: int, timeout: float = 60) -> dict:
    return wait_until(lambda: (job := http.get(f"{server.url}/api/jobs/{job_id}",
                                               timeout=10).json()["job"])["status"]
                      != "running" and job, timeout=timeout, what=f"job {job_id} finished")


def database_contents(server) -> str:
    """Every row of every table, through SQL."""
    engine = create_engine(server.env["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            return "\n".join(repr(tuple(row))
                             for table in inspect(engine).get_table_names()
                             for row in connection.execute(text(f'SELECT * FROM "{table}"')))
    finally:
        engine.dispose()


def test_finding_3_secret_never_reaches_events_api_pages_downloads_audit_or_log(
        live_server_factory, sshd_fleet, tmp_path, receiver, browser):
    server = secret_console(live_server_factory, sshd_fleet, tmp_path, LIVE_RUNBOOK)
    hosts = sshd_fleet.hosts[:2]
    names = [h.name for h in hosts]
    http = server.login()
    hook = http.post(f"{server.url}/api/webhooks", timeout=10, json={
        "url": f"http://127.0.0.1:{receiver.server_port}/hook",
        "events": ["job_started", "job_finished", "host_failed"]}).json()["webhook"]["id"]
    seen: list[str] = []  # what everyone can get, as text
    live: list[dict] = []
    client = server.socket(http)
    client.on("job:events", lambda payload: live.append(payload))
    for host in hosts:
        (host.root / "received").unlink(missing_ok=True)

    plan = http.post(f"{server.url}/api/jobs/plan", timeout=10, json={
        "runbook": "secretive", "params": {"password": PARAM_SECRET}, "servers": names})
    ack = client.call("job:start", {"runbook": "secretive",
                                    "params": {"password": PARAM_SECRET},
                                    "servers": names}, timeout=10)
    job = finished(server, http, ack["job_id"])
    adhoc_command = f"echo typed {ENV_SECRET} > {hosts[0].root}/adhoc"
    adhoc_id = http.post(f"{server.url}/api/jobs", timeout=10, json={
        "command": adhoc_command, "servers": names[:1]}).json()["job_id"]
    adhoc = finished(server, http, adhoc_id)
    wait_until(lambda: sum(b'"job_finished"' in body for body in receiver.bodies) == 2,
               timeout=30, what="both job_finished webhooks delivered")
    page = browser.new_page()
    log_in(page, server.url)
    page.goto(f"{server.url}/jobs/{job['id']}")
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(job["last_seq"]))
    shown_lines = rendered_logs(page, names)
    seen += [page.content(), page.inner_text("body")]
    page.close()
    client.disconnect()

    # The servers got the real values.
    for host in hosts:
        assert (host.root / "received").read_text() == f"{PARAM_SECRET} {ENV_SECRET}\n"
    assert (hosts[0].root / "adhoc").read_text() == f"typed {ENV_SECRET}\n"
    assert (job["status"], adhoc["status"]) == ("succeeded", "succeeded")
    # Everyone else sees them masked, everywhere.
    seen += [plan.text, json.dumps(ack), json.dumps(live, ensure_ascii=False)]
    for job_id in (job["id"], adhoc_id):
        for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/events?limit=5000",
                     f"/api/jobs/{job_id}/search?q=token", f"/jobs/{job_id}",
                     f"/jobs/{job_id}/log.txt", f"/jobs/{job_id}/log.txt?host={names[0]}"):
            seen.append(http.get(f"{server.url}{path}", timeout=10).text)
        for secret in SECRETS:
            assert http.get(f"{server.url}/api/jobs/{job_id}/search", timeout=10,
                            params={"q": secret}).json()["matches"] == []
    for path in ("/api/jobs", "/jobs", "/api/servers", "/servers", "/admin/audit",
                 f"/api/webhooks/{hook}/deliveries"):
        seen.append(http.get(f"{server.url}{path}", timeout=10).text)
    seen += [body.decode() for body in receiver.bodies]
    for number, content in enumerate(seen):
        assert_no_secret(f"answer #{number}", content)
    assert plan.json()["plan"]["params"] == {"password": MASK}
    assert plan.json()["plan"]["hosts"][0]["steps"][0]["command"].startswith(
        f"echo password={MASK} token={MASK}")
    assert shown_lines == {name: [f"password={MASK} token={MASK}"] for name in names}
    assert adhoc["params"] == {"command": f"echo typed {MASK} > {hosts[0].root}/adhoc"}
    assert query_db(server, "SELECT action FROM audit_entries WHERE action LIKE 'job.%' "
                    "ORDER BY id") == [("job.start",), ("job.adhoc",)]
    # ... and nothing of them is stored in clear, or logged.
    assert_no_secret("the database", database_contents(server))
    server.stop()
    assert_no_secret("the server log", server.log())
    database_file = Path(server.env["DATABASE_URL"].removeprefix("sqlite:///"))
    if server.env["DATABASE_URL"].startswith("sqlite"):
        for path in database_file.parent.glob(database_file.name + "*"):
            assert_no_secret(f"the database file {path.name}", path.read_bytes())


def test_finding_3_a_secret_job_stopped_by_a_restart_resumes_with_the_real_values(
        live_server_factory, sshd_fleet, tmp_path):
    server = secret_console(live_server_factory, sshd_fleet, tmp_path, HELD_RUNBOOK)
    host = sshd_fleet.hosts[0]
    for name in ("release", "received"):
        (host.root / name).unlink(missing_ok=True)
    (host.root / "allow").touch()
    http = server.login()
    job_id = http.post(f"{server.url}/api/jobs", timeout=10, json={
        "runbook": "held-secret", "params": {"password": PARAM_SECRET},
        "servers": [host.name]}).json()["job_id"]
    try:
        wait_until(lambda: query_db(server, "SELECT count(*) FROM job_events WHERE "
                                    "job_id = ? AND type = 'output'", job_id)[0][0],
                   what="the hold step printing")
        server.kill9()
        server.start()
        (host.root / "release").touch()
        job = finished(server, server.login(), job_id)
    finally:
        (host.root / "release").unlink(missing_ok=True)
        (host.root / "allow").unlink(missing_ok=True)

    assert job["status"] == "succeeded"
    assert (host.root / "received").read_text() == f"{PARAM_SECRET} {ENV_SECRET}\n"
    events = json.dumps(server.login().get(f"{server.url}/api/jobs/{job_id}/events",
                                           timeout=10).json(), ensure_ascii=False)
    assert "job_recovered" in events
    assert f"holding with {MASK}" in events
    assert_no_secret("the resumed job's events", events)
    assert_no_secret("the database", database_contents(server))


def test_finding_3_a_failed_job_with_a_secret_param_reruns_with_the_real_value(
        live_server_factory, sshd_fleet, tmp_path):
    server = secret_console(live_server_factory, sshd_fleet, tmp_path, HELD_RUNBOOK)
    host = sshd_fleet.hosts[1]
    (host.root / "received").unlink(missing_ok=True)
    (host.root / "release").touch()
    http = server.login()
    try:
        first = http.post(f"{server.url}/api/jobs", timeout=10, json={
            "runbook": "held-secret", "params": {"password": PARAM_SECRET},
            "servers": [host.name]}).json()["job_id"]
        failed = finished(server, http, first)
        (host.root / "allow").touch()
        answer = http.post(f"{server.url}/api/jobs/{first}/rerun", timeout=10)
        rerun = finished(server, http, answer.json()["job_id"])
    finally:
        (host.root / "release").unlink(missing_ok=True)
        (host.root / "allow").unlink(missing_ok=True)

    assert (failed["status"], rerun["status"]) == ("failed", "succeeded")
    assert (rerun["params"], rerun["rerun_of"]) == ({"password": MASK}, first)
    assert (host.root / "received").read_text() == f"{PARAM_SECRET} {ENV_SECRET}\n"
    for job_id in (first, rerun["id"]):
        assert_no_secret(f"job {job_id}", http.get(
            f"{server.url}/api/jobs/{job_id}/events", timeout=10).text)
    assert_no_secret("the database", database_contents(server))


# -- audit 3b, item 3: a secret in a line long enough to be cut -------------------------

def cut_and_masked(filler: str, secrets: list[str], data: bytes, chunk: int) -> list[str]:
    """The lines stored of ``data`` fed ``chunk`` bytes at a time to a splitter and a
    HostOutput that know ``secrets``, as the engine wires them."""
    stored: list[str] = []

    class Log:
        def append(self, job_id: int, type_: str, host: str | None, data: dict) -> int:
            stored.extend(data["lines"])
            return len(stored)

    output = HostOutput(Log(), 1, "gs-01", "long", 10, 500, mask=Masker(secrets))
    splitter = LineSplitter("stdout", output.line, secret_values=secrets)
    for start in range(0, len(data), chunk):
        splitter.feed(data[start:start + chunk])
    splitter.close()
    output.flush()
    assert splitter.offset == len(data)
    assert all(len(line.encode()) <= MAX_LINE_BYTES for line in stored)
    return stored


@pytest.mark.parametrize(("filler", "secrets"), [
    ("A", [PARAM_SECRET, ENV_SECRET]),
    ("é", ["pässwörd-🎮-42", VAR_SECRET]),  # multi-byte filler and secret
], ids=["ascii", "utf-8"])
def test_audit3b_3_a_long_line_is_never_cut_inside_a_secret(filler, secrets):
    width = len(filler.encode())
    longest = max(len(secret.encode()) for secret in secrets)
    # Every position of the cut inside either secret (or the pair), near the limit.
    for before in range((MAX_LINE_BYTES - 2 * longest) // width - 1,
                        MAX_LINE_BYTES // width + 2):
        text = filler * before + "".join(secrets)
        expected = filler * before + MASK * len(secrets)
        for tail, chunk in ((b"\n", 1 << 20), (b"", 7)):  # whole; arriving, unended
            stored = cut_and_masked(filler, secrets, text.encode() + tail, chunk)

            assert "".join(stored) == expected, (before, chunk)


# Each stream prints a run of filler and then a secret on one line, so that the console's
# cut at MAX_LINE_BYTES falls inside the secret: PARAM_SECRET's first 4 characters and
# ENV_SECRET's first 10 before it.
LONG_LINE_RUNBOOK = """\
name: long-line
description: Prints a secret at the end of a line longer than the console keeps whole.
params:
  password:
    secret: true
    pattern: '^[A-Za-z0-9][A-Za-z0-9-]{7,63}$'
steps:
  - name: long
    run: |
      head -c 16380 /dev/zero | tr '\\0' A; echo {{ params.password }}
      head -c 16374 /dev/zero | tr '\\0' B >&2; echo {{ vars.token }} >&2
"""


def test_audit3b_3_a_secret_cut_by_a_long_line_stays_masked_in_events_search_and_log(
        live_server_factory, sshd_fleet, tmp_path):
    server = secret_console(live_server_factory, sshd_fleet, tmp_path, LONG_LINE_RUNBOOK)
    host = sshd_fleet.hosts[0]
    http = server.login()
    job_id = http.post(f"{server.url}/api/jobs", timeout=10, json={
        "runbook": "long-line", "params": {"password": PARAM_SECRET},
        "servers": [host.name]}).json()["job_id"]
    job = finished(server, http, job_id)
    events = http.get(f"{server.url}/api/jobs/{job_id}/events", timeout=10,
                      params={"limit": 5000}).json()["events"]
    log = http.get(f"{server.url}/jobs/{job_id}/log.txt", timeout=10).text

    pieces = {stream: "".join(line for e in events if e["type"] == "output"
                              and e["data"]["stream"] == stream for line in e["data"]["lines"])
              for stream in ("stdout", "stderr")}
    halves = [PARAM_SECRET[:4], PARAM_SECRET[4:], ENV_SECRET[:10], ENV_SECRET[10:]]
    assert job["status"] == "succeeded"
    assert pieces == {"stdout": "A" * 16380 + MASK, "stderr": "B" * 16374 + MASK}
    for half in halves:
        assert half not in log, f"{half!r} reached the log download"
        assert http.get(f"{server.url}/api/jobs/{job_id}/search", timeout=10,
                        params={"q": half}).json()["matches"] == [], f"{half!r} was found"
