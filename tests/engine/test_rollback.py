"""Rolling servers back to their previous build (tasks/planning/rollback.py), on the demo fleet:
the game-update runbook's rollback section switches ``current`` back and restarts the
game server, which then answers with the previous build. Through the API, refusals
that change nothing, and the servers page (drift filter, Roll back button)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD, PROJECT
from tests.support.console_world import LONG, finished_job, log_in, query_db, start_job
from tests.support.remote import unique_seconds

USERS = [("alice", PASSWORD, "operator"), ("vera", PASSWORD, "viewer")]
NAP_BUSY = unique_seconds(48)  # an ad-hoc job holding a server


@pytest.fixture
def console(live_server_factory, demo_fleet):
    return live_server_factory(inventory=Path(demo_fleet["inventory"]),
                               runbook_dir=PROJECT / "runbooks", users=USERS)


def game_port(demo_fleet) -> int:
    return int(re.search(r"game_port: (\d+)", Path(demo_fleet["inventory"]).read_text())
               .group(1))


def probe(demo_fleet, name: str) -> str:
    """The build the host's game server answers with (the demo's own probe)."""
    address = next(h["address"] for h in demo_fleet["hosts"] if h["name"] == name)
    done = subprocess.run([sys.executable, str(PROJECT / "demo" / "gameserver.py"), "probe",
                           "--host", address, "--port", str(game_port(demo_fleet)),
                           "--timeout", "10"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def deploy(console, http, version: str, servers: list[str]) -> None:
    job_id = start_job(console, http, {"runbook": "game-update", "servers": servers,
                                       "params": {"version": version, "fast": "true"}})
    job = finished_job(console, http, job_id)
    assert job["status"] == "succeeded", job


def servers_of(console, http) -> dict[str, dict]:
    answer = http.get(f"{console.url}/api/servers", timeout=30)
    assert answer.status_code == 200, answer.text
    return {row["name"]: row for row in answer.json()["servers"]}


def state(console, http) -> tuple:
    """What a refused rollback must leave alone: servers, jobs and audit entries."""
    builds = {name: (row["version"], row["previous_version"], row["target_version"])
              for name, row in servers_of(console, http).items()}
    jobs = query_db(console, "SELECT id, kind, status FROM jobs ORDER BY id")
    audit = query_db(console, "SELECT id FROM audit_entries WHERE action = ?", "job.rollback")
    return builds, jobs, audit


def test_rolling_one_server_back_restores_its_previous_build(console, demo_fleet):
    http = console.login("alice")
    deploy(console, http, "1.4.2", ["gs-01", "gs-02"])
    deploy(console, http, "1.4.3", ["gs-01", "gs-02"])
    assert probe(demo_fleet, "gs-01") == "1.4.3"

    answer = http.post(f"{console.url}/api/servers/gs-01/rollback", timeout=30)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    job = finished_job(console, http, job_id)

    assert (job["status"], job["kind"], job["runbook"]) == ("succeeded", "rollback",
                                                            "game-update")
    assert [h["name"] for h in job["hosts"]] == ["gs-01"]
    assert probe(demo_fleet, "gs-01") == "1.4.2"
    assert probe(demo_fleet, "gs-02") == "1.4.3"  # left alone
    rows = servers_of(console, http)
    assert (rows["gs-01"]["version"], rows["gs-01"]["previous_version"]) == ("1.4.2", "1.4.3")
    assert (rows["gs-02"]["version"], rows["gs-02"]["previous_version"]) == ("1.4.3", "1.4.2")
    assert rows["gs-01"]["drift"] is True and rows["gs-01"]["newest_version"] == "1.4.3"
    assert rows["gs-01"]["target_version"] is None  # the rollback has ended
    (target, detail), = query_db(console, "SELECT target, detail FROM audit_entries "
                                          "WHERE action = ?", "job.rollback")
    assert target == f"job #{job_id}"
    assert json.loads(detail) == {"runbook": "game-update", "servers": ["gs-01"],
                                  "to": {"gs-01": "1.4.2"}, "via": "api"}
    # On the host: current names the previous release, switched by a rename.
    events = http.get(f"{console.url}/api/jobs/{job_id}/events", timeout=30,
                      params={"after_seq": 0}).json()["events"]
    lines = [line for e in events if e["type"] == "output" for line in e["data"]["lines"]]
    assert "current -> releases/1.4.2 (was releases/1.4.3)" in lines
    assert lines[-1] == "1.4.2"

    # A second rollback never goes forward to the build gs-01 was rolled back from:
    # nothing succeeded there before 1.4.2, so it is refused and nothing starts.
    again = http.post(f"{console.url}/api/servers/rollback", timeout=30,
                      json={"servers": ["gs-01", "gs-02"], "runbook": "game-update"})
    assert again.status_code == 400, again.text
    assert again.json()["error"]["message"].startswith(
        "server gs-01 has no previous build to roll back to")
    assert (probe(demo_fleet, "gs-01"), probe(demo_fleet, "gs-02")) == ("1.4.2", "1.4.3")


def test_refused_rollbacks_change_nothing(console, demo_fleet):
    http = console.login("alice")
    deploy(console, http, "1.4.2", ["gs-03"])  # one build: nothing to go back to
    before = state(console, http)

    def refused(path: str, body: dict | None = None, who=http) -> dict:
        answer = who.post(f"{console.url}/api/servers{path}", json=body, timeout=30)
        assert answer.status_code >= 400, answer.text
        assert state(console, http) == before
        return {"status": answer.status_code, **answer.json()["error"]}

    assert refused("/gs-99/rollback") == {
        "status": 400, "code": "unknown_server", "message": "unknown server 'gs-99'",
        "field": "servers"}
    no_previous = refused("/gs-03/rollback")
    assert (no_previous["status"], no_previous["field"]) == (400, "servers")
    assert no_previous["message"].startswith("server gs-03 has no previous build to roll "
                                             "back to")
    assert refused("/gs-04/rollback")["message"].startswith(
        "server gs-04 has no previous build")  # never reported a build at all
    assert refused("/gs-03/rollback", {"runbook": "nope"})["field"] == "runbook"
    assert refused("/rollback", {"servers": []})["field"] == "servers"
    assert refused("/rollback", {"servers": ["gs-03", "gs-03"]})["message"] == \
        "a server is listed twice"
    viewer = console.login("vera")
    assert refused("/gs-03/rollback", who=viewer) == {
        "status": 403, "code": "forbidden", "field": None,
        "message": "viewers can't roll servers back (that takes the operator role)"}

    # A busy server: held by an ad-hoc job until it is cancelled.
    deploy(console, http, "1.4.3", ["gs-03"])
    busy_job = start_job(console, http, {"command": f"sleep {NAP_BUSY}",
                                         "servers": ["gs-03"]})
    before = state(console, http)  # the job holds gs-03 from the moment it is recorded
    try:
        busy = refused("/gs-03/rollback")
        assert (busy["status"], busy["code"], busy["field"]) == (409, "server_busy",
                                                                 "servers")
        assert re.fullmatch(rf"server gs-03 is held by .*job #{busy_job}", busy["message"])
    finally:
        http.post(f"{console.url}/api/jobs/{busy_job}/cancel", timeout=30)
    assert finished_job(console, http, busy_job)["status"] == "cancelled"


def test_drift_filter_and_roll_back_button(console, demo_fleet, browser):
    http = console.login("alice")
    deploy(console, http, "2.0.9", ["gs-05"])
    deploy(console, http, "2.1.0", ["gs-05", "gs-06"])
    deploy(console, http, "2.1.1", ["gs-05"])  # gs-06 drifts: a tie goes to the newer 2.1.1
    page = browser.new_page()
    log_in(page, console.url)

    page.goto(f"{console.url}/servers")
    page.click('#build-groups a[data-filter="drift"]')
    expect(page).to_have_url(f"{console.url}/servers?drift=1")
    expect(page.locator("#servers tbody tr:visible")).to_have_count(1)
    drifted = page.locator('#servers tr[data-server="gs-06"]')
    expect(drifted).to_be_visible()
    expect(drifted).to_have_attribute("data-drift", "true")
    expect(drifted.locator(".server-version")).to_contain_text("agreed: 2.1.1")
    expect(page.locator("#drift-count")).to_have_text("(1)")
    expect(page.locator('.build-group[data-build="2.1.1"] .build-count')).to_have_text("(1)")

    watch = browser.new_page()  # stays open: follows the rollback live
    log_in(watch, console.url)
    watch.goto(f"{console.url}/servers")
    expect(watch.locator('#servers tr[data-server="gs-06"]')).to_have_attribute(
        "data-drift", "true")

    page.goto(f"{console.url}/servers?build=2.1.1")
    expect(page.locator("#servers tbody tr:visible")).to_have_count(1)
    row = page.locator('#servers tr[data-server="gs-05"]')
    expect(row.locator(".build-rollback")).to_have_text(
        "Roll back to 2.1.0, the last build that succeeded here before 2.1.1 (job #2)")
    row.locator(".rollback-one").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("gs-05: 2.1.1 → 2.1.0")
    page.click("#confirm-accept")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    assert probe(demo_fleet, "gs-05") == "2.1.0"
    # Live, without a reload: gs-05's row, and gs-06's drift (a row the job never touched).
    expect(watch.locator('#servers tr[data-server="gs-05"]')).to_have_attribute(
        "data-version", "2.1.0")
    expect(watch.locator('#servers tr[data-server="gs-06"]')).to_have_attribute(
        "data-drift", "false")
    expect(watch.locator("#drift-count")).to_have_text("(0)")

    page.goto(f"{console.url}/servers")
    back = page.locator('#servers tr[data-server="gs-05"]')
    expect(back).to_have_attribute("data-version", "2.1.0")
    expect(back).to_have_attribute("data-previous-version", "2.1.1")
    # Rolled back from 2.1.1: Roll back now offers 2.0.9, never 2.1.1 again.
    expect(back).to_have_attribute("data-rollback-version", "2.0.9")
    expect(back.locator(".build-rollback")).to_have_text(
        "Roll back to 2.0.9, the last build that succeeded here before 2.1.0 (job #1)")
    # Both on 2.1.0 now: no server of the tag reports 2.1.1, so neither drifts.
    expect(page.locator("#drift-count")).to_have_text("(0)")
    other = page.locator('#servers tr[data-server="gs-06"]')
    expect(other.locator(".rollback-one")).to_be_hidden()  # nothing to go back to
    expect(other.locator(".rollback-pick")).to_be_disabled()
    expect(back.locator(".rollback-one")).to_be_enabled()

    # A selection asks first too; dismissed, nothing starts.
    jobs = query_db(console, "SELECT id FROM jobs")
    back.locator(".rollback-pick").check()
    expect(page.locator("#rollback-selected")).to_have_text("Roll back 1 selected")
    page.click("#rollback-selected")
    expect(dialog).to_contain_text("gs-05: 2.1.0 → 2.0.9")
    expect(dialog).not_to_contain_text("2.1.1")
    page.click("#confirm-dismiss")
    expect(dialog).to_be_hidden()
    assert page.url == f"{console.url}/servers"
    assert query_db(console, "SELECT id FROM jobs") == jobs

    viewer = browser.new_page()
    log_in(viewer, console.url, "vera")
    viewer.goto(f"{console.url}/servers")
    expect(viewer.locator("#role-note")).to_contain_text("can't roll them back")
    expect(viewer.locator(".rollback-one")).to_have_count(0)
    expect(viewer.locator("#rollback-selected")).to_have_count(0)


@pytest.fixture
def game_world(app, demo_fleet):
    """An engine with the shipped runbooks over the demo fleet (no web server)."""
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory
    from tests.support.engine_world import build_world

    inventory = Path(demo_fleet["inventory"])
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text(), str(inventory)))
        db.session.commit()
    return build_world(app, PROJECT / "runbooks")


def test_a_deploy_keeps_the_last_three_releases_and_switches_current_atomically(
        game_world, demo_fleet):
    world = game_world
    root = Path(demo_fleet["state_dir"]) / "hosts" / "gs-07"
    for version in ("3.0.1", "3.0.2", "3.0.3", "3.0.4"):
        job = world.wait_finished(world.engine.start(world.engine.plan(
            "game-update", {"version": version, "fast": "true"}, ["gs-07"]), None))
        assert job.status == "succeeded"

    assert sorted(path.name for path in (root / "releases").iterdir()) == [
        "3.0.2", "3.0.3", "3.0.4"]
    assert (root / "current").readlink() == Path("releases/3.0.4")
    assert (root / "previous").readlink() == Path("releases/3.0.3")
    assert not (root / "current.new").exists()
    lines = [line for e in world.events(job.id) if e["type"] == "output"
             and e["data"]["step"] == "deploy" for line in e["data"]["lines"]]
    assert "removed old release releases/3.0.1" in lines

    # Back on 3.0.2 by hand (say, an old rollback): deploying again keeps what current
    # and previous name even when they are not among the three newest.
    (root / "current").unlink()
    (root / "current").symlink_to("releases/3.0.2")
    releases = {}
    for version in ("3.0.5", "3.0.6"):
        job = world.wait_finished(world.engine.start(world.engine.plan(
            "game-update", {"version": version, "fast": "true"}, ["gs-07"]), None))
        assert job.status == "succeeded"
        releases[version] = (sorted(path.name for path in (root / "releases").iterdir()),
                             (root / "previous").readlink())
    assert releases == {
        "3.0.5": (["3.0.2", "3.0.3", "3.0.4", "3.0.5"], Path("releases/3.0.2")),
        "3.0.6": (["3.0.4", "3.0.5", "3.0.6"], Path("releases/3.0.5"))}


@pytest.fixture
def sshd_world(app, sshd_fleet, tmp_path):
    """An engine with the test runbooks (versioned has a rollback section) over sshd."""
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory
    from tests.conftest import TEST_RUNBOOKS, write_inventory
    from tests.support.engine_world import build_world

    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    return build_world(app, TEST_RUNBOOKS)


def test_a_failed_rollback_is_rerun_on_the_servers_that_failed(sshd_world, sshd_fleet):
    import shutil

    from tasks.planning.rollback import rollback_runbook

    world, engine = sshd_world, sshd_world.engine
    hosts = ["h01", "h02"]
    for version in ("1.0.9", "1.0.10"):
        assert world.wait_finished(engine.start(engine.plan(
            "versioned", {"version": version}, hosts), None)).status == "succeeded"
    with world.sessions() as session:
        book, builds = rollback_runbook(session, engine.runbooks(), hosts, None)
    assert (book.name, book.kind) == ("versioned", "rollback")
    assert {name: (t.version, t.reason) for name, t in builds.items()} == {
        name: ("1.0.9", "1.0.9, the last build that succeeded here before 1.0.10 (job #1)")
        for name in hosts}
    h02 = next(h for h in sshd_fleet.hosts if h.name == "h02").root / "versioned"
    shutil.rmtree(h02)  # its rollback cannot write the build file: it fails
    job = world.wait_finished(engine.start(engine.plan(book, None, hosts), None))
    assert (job.kind, job.target_version, job.status) == ("rollback", "1.0.9", "failed")
    assert {h.name: h.status for h in job.hosts} == {"h01": "succeeded", "h02": "failed"}

    h02.mkdir()
    rerun = world.wait_finished(engine.start(engine.rerun_plan(job.id), None,
                                             rerun_of=job.id))
    assert (rerun.kind, rerun.runbook, rerun.status) == ("rollback", "versioned",
                                                         "succeeded")
    assert [h.name for h in rerun.hosts] == ["h02"]
    assert (h02 / "VERSION").read_text() == "1.0.9\n"
    from models import Server
    with world.sessions() as session:
        facts = {s.name: (s.facts["version"], s.facts["previous_version"])
                 for s in session.query(Server).filter(Server.name.in_(hosts))}
    assert facts == {"h01": ("1.0.9", "1.0.10"), "h02": ("1.0.9", "1.0.10")}


def test_a_second_rollback_goes_further_back_never_forward(sshd_world):
    from models import JobHost, Server, ServerBuild
    from tasks.errors import PatchbayError
    from tasks.planning.rollback import rollback_runbook

    world, engine = sshd_world, sshd_world.engine

    def run(book, params=None):
        job = world.wait_finished(engine.start(engine.plan(book, params, ["h01"]), None))
        assert job.status == "succeeded"
        return job

    def roll_back():
        with world.sessions() as session:
            book, builds = rollback_runbook(session, engine.runbooks(), ["h01"], None)
        return run(book), builds["h01"]

    jobs = [run("versioned", {"version": v}).id for v in ("1.0.6", "1.0.7", "1.0.8")]
    first, offered = roll_back()
    assert (offered.version, offered.job_id) == ("1.0.7", jobs[1])
    second, offered = roll_back()  # 1.0.8 was rolled back from: never offered again
    assert (offered.version, offered.job_id, offered.reason) == (
        "1.0.6", jobs[0], f"1.0.6, the last build that succeeded here before 1.0.7 "
        f"(job #{jobs[0]})")
    with world.sessions() as session:
        server = session.query(Server).filter_by(name="h01").one()
        assert server.facts["version"] == "1.0.6"
        assert [(b.version, b.job_id, b.status) for b in session.query(ServerBuild)
                .filter_by(server_id=server.id).order_by(ServerBuild.id)] == [
            ("1.0.6", jobs[0], "succeeded"), ("1.0.7", jobs[1], "succeeded"),
            ("1.0.8", jobs[2], "succeeded"), ("1.0.7", first.id, "succeeded"),
            ("1.0.6", second.id, "succeeded")]
        assert [(h.from_version, h.to_version) for h in session.query(JobHost).filter(
            JobHost.job_id.in_([jobs[2], first.id, second.id])).order_by(JobHost.job_id)
                ] == [("1.0.7", "1.0.8"), ("1.0.8", "1.0.7"), ("1.0.7", "1.0.6")]
    with pytest.raises(PatchbayError) as caught:  # nothing good before 1.0.6
        engine.plan(rollback_runbook_now(world, engine), None, ["h01"])
    assert caught.value.message.startswith("server h01 has no previous build")


def rollback_runbook_now(world, engine):
    from tasks.planning.rollback import rollback_runbook

    with world.sessions() as session:
        return rollback_runbook(session, engine.runbooks(), ["h01"], None)[0]


def test_the_rollback_target_is_the_last_good_build_below_the_current_one():
    from tasks.planning.build_history import BuildEntry, rollback_target

    def entry(version, job, status="succeeded", rollback=False):
        return BuildEntry(version, job, status, rollback)

    deploys = [entry("1.4.6", 1), entry("1.4.7", 2), entry("1.4.8", 3)]
    assert rollback_target(deploys, "1.4.8").version == "1.4.7"
    back = [*deploys, entry("1.4.7", 4, rollback=True)]
    assert (rollback_target(back, "1.4.7").version,
            rollback_target(back, "1.4.7").job_id) == ("1.4.6", 1)
    failed = [*deploys, entry("1.4.9", 5, "failed")]  # reported 1.4.9, then failed
    assert rollback_target(failed, "1.4.9").version == "1.4.8"
    bad_middle = [entry("1.4.6", 1), entry("1.4.7", 2, "failed"), entry("1.4.8", 3)]
    assert rollback_target(bad_middle, "1.4.8").version == "1.4.6"
    again = [*deploys, entry("1.4.8", 6)]  # the same build again: one entry
    assert rollback_target(again, "1.4.8").version == "1.4.7"
    older_by_hand = [*deploys, entry("1.4.6", 7)]  # an older build deployed on purpose
    assert rollback_target(older_by_hand, "1.4.6").version == "1.4.8"
    assert rollback_target([entry("1.4.6", 1)], "1.4.6") is None
    # No history (reported before it was kept): the previous_version fact.
    assert rollback_target([], "1.4.8", "1.4.7").reason == (
        "1.4.7, the build it reported before 1.4.8")
    assert rollback_target([], "1.4.8", None) is None


def _book(name: str, rollback: bool):
    from tasks.planning.runbook_files import parse_runbook

    text = f"name: {name}\nsteps:\n  - name: s\n    run: echo hi\n"
    if rollback:
        text += "rollback:\n  - name: back\n    run: |\n      v={{ previous_version }}\n"
    return parse_runbook(text, f"{name}.yml")


def test_the_rollback_runbook_is_the_requested_the_reporting_or_the_only_one():
    from tasks.errors import PatchbayError
    from tasks.planning.rollback import choose_runbook

    books = {name: _book(name, able) for name, able in
             (("deploy", True), ("other", True), ("plain", False))}
    assert choose_runbook(books, "other", ["deploy"]).name == "other"
    assert choose_runbook(books, None, ["deploy", None]).name == "deploy"
    assert choose_runbook({"deploy": books["deploy"], "plain": books["plain"]}, None,
                          ["plain"]).name == "deploy"  # the only one with a section

    def refusal(candidates, requested, reporters) -> tuple[str, str, str]:
        with pytest.raises(PatchbayError) as caught:
            choose_runbook(candidates, requested, reporters)
        return caught.value.code, caught.value.field, caught.value.message

    assert refusal(books, "nope", []) == ("unknown_runbook", "runbook",
                                          "no runbook named 'nope'")
    assert refusal(books, "plain", [])[2] == "runbook plain has no rollback section"
    assert refusal(books, None, ["deploy", "other"])[2] == (
        "several runbooks have a rollback section (deploy, other): choose one with runbook")
    assert refusal({"plain": books["plain"]}, None, ["plain"])[2] == (
        "no runbook has a rollback section, so nothing can roll a server back")
