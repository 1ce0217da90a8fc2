"""Issue #15, acting on jobs: buttons that say what they do (item 5), a dialog before
acting (6), pages that show a viewer what a viewer may do and refusals in words (7),
new users as viewers (8), parameter hints instead of raw patterns (9), and a server
picker that shows only what its mode uses (12)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from services.auth.permissions import HTTP_ACTIONS, HTTP_RULES, PUBLIC, SOCKET_RULES
from tasks.errors import PatchbayError
from tasks.planning.runbook_files import RunbookError, parse_runbook
from tests.conftest import PASSWORD, socket_test_client, write_inventory
from tests.support.console_world import (
    LONG,
    USERS,
    finished_job,
    job_of,
    log_in,
    runbook_dir,
    start_console,
    start_job,
)

VERSIONED = """\
name: versioned
params:
  version:
    pattern: '^[0-9]+(\\.[0-9]+){2}$'
    pattern_hint: three numbers
    example: 1.4.2
steps:
  - name: show
    run: echo {{ params.version }}
"""


def held_command(release: Path) -> str:
    """An ad-hoc command that runs until the test creates ``release`` (the servers are
    local processes, so they see the test's files)."""
    return f"echo holding; until [ -e {release} ]; do sleep 0.05; done; echo released"




def job_ids(console, http) -> list[int]:
    return [job["id"] for job in http.get(f"{console.url}/api/jobs", timeout=30)
            .json()["jobs"]]


def dialog(page: Page):
    return page.locator("#confirm-dialog")


# --- item 5: the re-run buttons say what they do -------------------------------------


@pytest.mark.browser
def test_item_5_a_cancelled_job_runs_again_and_only_a_failed_one_re_runs_failed(
        browser, live_server_factory, sshd_fleet, tmp_path):
    console = start_console(live_server_factory, sshd_fleet, tmp_path)
    http = console.login()
    release = tmp_path / "release"
    cancelled = start_job(console, http, {"command": held_command(release),
                                      "servers": ["h01", "h04"]})
    http.post(f"{console.url}/api/jobs/{cancelled}/cancel", timeout=30)
    failed = start_job(console, http, {"runbook": "basic", "servers": ["h02", "h03"],
                                   "params": {"message": "hi", "fail_on": "h02"}})
    assert finished_job(console, http, cancelled)["status"] == "cancelled"
    assert finished_job(console, http, failed)["status"] == "failed"
    page = browser.new_page()
    log_in(page, console.url)

    page.goto(f"{console.url}/jobs/{failed}")
    expect(page.locator("#rerun-button")).to_have_text("Re-run failed servers")
    page.goto(f"{console.url}/jobs/{cancelled}")
    rerun = page.locator("#rerun-button")
    expect(rerun).to_have_text("Run again")
    rerun.click()
    expect(dialog(page)).to_contain_text("did not succeed (2 cancelled): h01, h04")
    expect(page.locator("#confirm-accept")).to_have_text("Run again on 2 servers")
    page.keyboard.press("Escape")
    expect(dialog(page)).to_be_hidden()
    assert sorted(job_ids(console, http)) == sorted([cancelled, failed])
    rerun.click()
    page.click("#confirm-accept")
    page.wait_for_url(re.compile(rf"/jobs/(?!{cancelled}$)\d+$"))  # the new job's page
    again = int(page.url.rsplit("/", 1)[1])
    release.touch()

    job = finished_job(console, http, again)
    assert (job["rerun_of"], job["status"]) == (cancelled, "succeeded")
    assert sorted(host["name"] for host in job["hosts"]) == ["h01", "h04"]


# --- item 6: confirm before acting ------------------------------------------------------


@pytest.mark.browser
def test_item_6_cancel_asks_in_a_dialog_that_names_the_job(
        browser, live_server_factory, sshd_fleet, tmp_path):
    console = start_console(live_server_factory, sshd_fleet, tmp_path)
    http = console.login()
    job_id = start_job(console, http, {"command": held_command(tmp_path / "release"),
                                   "servers": ["h05"]})
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator(".host-log .line", has_text="holding")).to_be_attached(timeout=LONG)

    page.click("#cancel-button")
    expect(dialog(page)).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text(f"Cancel job #{job_id}?")
    expect(dialog(page)).to_contain_text("the ad-hoc command on 1 server")
    expect(page.locator("#confirm-accept")).to_have_text(f"Cancel job #{job_id}")
    page.keyboard.press("Escape")
    expect(dialog(page)).to_be_hidden()
    page.click("#cancel-button")
    page.click("#confirm-dismiss")
    expect(dialog(page)).to_be_hidden()
    assert job_of(console, http, job_id)["status"] == "running"  # held by the file
    page.click("#cancel-button")
    page.click("#confirm-accept")

    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    assert finished_job(console, http, job_id)["status"] == "cancelled"


@pytest.mark.browser
def test_item_6_a_run_on_more_than_n_servers_asks_naming_how_many_and_which_tags(
        browser, live_server_factory, sshd_fleet, tmp_path):
    from config import DEFAULTS

    console = start_console(live_server_factory, sshd_fleet, tmp_path,
                            env={"PATCHBAY_CONFIRM_SERVERS_OVER": "3"})
    http = console.login()
    page = browser.new_page()
    log_in(page, console.url)
    page.select_option("#runbook", "basic")
    page.fill("#param-message", "hi")
    page.check("#target-tags")
    page.check("#tag-odd")

    page.click("#run-button")
    expect(dialog(page)).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Run basic on 4 servers?")
    expect(dialog(page)).to_contain_text("on 4 servers with tag odd")
    expect(dialog(page)).to_contain_text("h01, h03, h05, h07")
    expect(page.locator("#confirm-accept")).to_have_text("Run on 4 servers")
    page.keyboard.press("Escape")
    expect(dialog(page)).to_be_hidden()
    assert job_ids(console, http) == []
    page.click("#run-button")
    page.click("#confirm-accept")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    large = int(page.url.rsplit("/", 1)[1])
    finished_job(console, http, large)
    page.goto(f"{console.url}/")
    page.select_option("#runbook", "basic")
    page.fill("#param-message", "hi")
    page.check("#target-servers")
    for name in ["h02", "h04", "h06"]:
        page.check(f"#server-{name}")
    page.click("#run-button")  # three servers: no question
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    small = int(page.url.rsplit("/", 1)[1])

    assert DEFAULTS["CONFIRM_SERVERS_OVER"] == 20
    assert sorted(h["name"] for h in job_of(console, http, large)["hosts"]) == \
        ["h01", "h03", "h05", "h07"]
    assert sorted(h["name"] for h in finished_job(console, http, small)["hosts"]) == \
        ["h02", "h04", "h06"]


# --- item 7: role-aware pages, refusals in words -----------------------------------------


@pytest.mark.browser
def test_item_7_a_viewer_is_shown_what_a_viewer_may_do_and_no_forms(
        browser, live_server_factory, sshd_fleet, tmp_path):
    console = live_server_factory(
        inventory=write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries()),
        runbook_dir=runbook_dir(tmp_path), users=USERS + [("vera", PASSWORD, "viewer")])
    http = console.login()
    job_id = start_job(console, http, {"runbook": "basic", "params": {"message": "hi"},
                                   "servers": ["h01"]})
    finished_job(console, http, job_id)
    page = browser.new_page()
    log_in(page, console.url, "vera")

    expect(page.locator("#role-note")).to_contain_text(
        "you can watch every job and server live, but viewers can't start jobs or run "
        "commands")
    expect(page.locator("#rollout-form")).to_have_count(0)
    expect(page.locator("#run-button")).to_have_count(0)
    expect(page.locator("#recent-jobs")).to_contain_text(f"#{job_id}")
    page.goto(f"{console.url}/jobs")
    expect(page.get_by_role("link", name="New job")).to_have_count(0)
    expect(page.locator("#role-note")).to_have_text(
        "You can watch these jobs; viewers can't start, cancel or re-run them.")
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    expect(page.locator("#cancel-button, #rerun-button")).to_have_count(0)
    expect(page.locator("#role-note")).to_have_text(
        "You are watching: viewers can't cancel or re-run jobs.")


def seed_users(app) -> None:
    from extensions import db
    from models import User

    with app.app_context():
        for role in ("viewer", "operator", "admin"):
            user = User(username=role, role=role)
            user.set_password(PASSWORD)
            db.session.add(user)
        db.session.commit()


def log_client_in(client, username: str) -> str:
    """Log ``client`` in through the form; returns the session's CSRF token."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    return re.search(r'name="csrf-token" content="([^"]+)"',
                     client.get("/").get_data(as_text=True)).group(1)


def refusal_of(response) -> str:
    if response.is_json:
        return response.get_json()["error"]["message"]
    return html.unescape(re.search(r'id="forbidden-message"[^>]*>([^<]*)<',
                                   response.get_data(as_text=True)).group(1))


def test_item_7_refusals_name_the_action_never_an_event_or_endpoint(app):
    from extensions import socketio

    seed_users(app)
    events = sorted(set(socketio.server.handlers["/"]) - {"connect", "disconnect"})
    refused: dict[str, str] = {}
    for role in ("viewer", "operator"):
        client = app.test_client()
        token = log_client_in(client, role)
        sock = socket_test_client(app, client)
        for event in events:
            ack = sock.emit(event, {}, callback=True)
            if ack["error"]["code"] == "forbidden":
                refused[f"{role} {event}"] = ack["error"]["message"]
        sock.disconnect()
        for rule in app.url_map.iter_rules():
            if HTTP_RULES[rule.endpoint] in (PUBLIC, "viewer") or rule.arguments - {
                    "job_id", "user_id", "webhook_id"}:
                continue
            path = re.sub(r"<(?:[a-z]+:)?[a-z_]+>", "1", rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = client.open(path, method=method, json={},
                                       headers={"X-CSRFToken": token})
                if response.status_code == 403:
                    refused[f"{role} {method} {rule.endpoint}"] = refusal_of(response)

    names = set(SOCKET_RULES) | set(HTTP_RULES)
    assert [(door, message) for door, message in refused.items()
            if any(name in message for name in names) or ":" in message] == []
    assert refused["viewer job:start"] == \
        "viewers can't start jobs (that takes the operator role)"
    assert refused["viewer job:cancel"].startswith("viewers can't cancel jobs")
    assert refused["viewer job:rerun"].startswith("viewers can't re-run jobs")
    assert refused["viewer job:adhoc"].startswith("viewers can't run commands")
    assert refused["viewer POST api.start_job"] == refused["viewer job:start"]
    assert refused["operator GET admin.users_page"] == \
        "operators can't manage users (that takes the admin role)."
    assert {endpoint for endpoint, rule in HTTP_RULES.items()
            if rule not in (PUBLIC, "viewer")} - set(HTTP_ACTIONS) == set()


# --- item 8: new users are viewers ------------------------------------------------------


def test_item_8_a_new_user_is_a_viewer_unless_given_a_role(app, auth):
    from extensions import db
    from models import User

    auth.create("root", role="admin")
    auth.login("root")
    page = auth.client.get("/admin/users").get_data(as_text=True)
    form = page[page.index('id="create-user-form"'):]
    chosen = re.findall(r'<option([^>]*)value="(\w+)"', form[:form.index("</select>")])

    created = app.test_cli_runner().invoke(args=["create-user", "newbie", "--password",
                                                 PASSWORD])

    assert [value for attributes, value in chosen if "selected" in attributes] == ["viewer"]
    assert created.output.strip() == "user newbie (viewer) created"
    with app.app_context():
        assert db.session.scalar(db.select(User.role).where(User.username == "newbie")) \
            == "viewer"


# --- item 9: a bad value is explained in words -------------------------------------------


def test_item_9_a_bad_version_is_explained_in_words_with_the_pattern_in_a_detail():
    book = parse_runbook(VERSIONED, "versioned.yml")

    with pytest.raises(PatchbayError) as caught:
        book.validate_params({"version": "1.4"})

    assert caught.value.to_dict() == {
        "code": "invalid", "message": "version must be three numbers, like 1.4.2",
        "field": "params.version",
        "detail": r"parameter 'version' value '1.4' does not match ^[0-9]+(\.[0-9]+){2}$"}
    assert book.describe()["params"]["version"] | {"pattern": "…"} == {
        "type": "string", "pattern": "…", "description": "", "default": None,
        "required": True, "secret": False, "example": "1.4.2",
        "pattern_hint": "three numbers"}
    with pytest.raises(RunbookError, match="example '1.4' does not match the pattern"):
        parse_runbook(VERSIONED.replace("example: 1.4.2", "example: '1.4'"), "bad.yml")


def test_item_9_the_api_and_the_socket_answer_the_words_and_the_detail(app, auth):
    auth.create("olga", role="operator")
    auth.login("olga")
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      auth.client.get("/").get_data(as_text=True)).group(1)
    bad = {"runbook": "flaky", "params": {"fail_on": "H02"}, "servers": ["x"]}

    answer = auth.client.post("/api/jobs/plan", json=bad, headers={"X-CSRFToken": token})
    sock = socket_test_client(app, auth.client)
    ack = sock.emit("job:plan", bad, callback=True)
    described = {book["name"]: book for book in
                 auth.client.get("/api/runbooks").get_json()["runbooks"]}

    expected = {"ok": False, "error": {
        "code": "invalid", "field": "params.fail_on",
        "message": "fail_on must be server names separated by commas, like h02,h05",
        "detail": "parameter 'fail_on' value 'H02' does not match ^[a-z0-9,-]{1,200}$"}}
    assert (answer.status_code, answer.get_json()) == (400, expected)
    assert ack == expected
    fail_on = described["flaky"]["params"]["fail_on"]
    assert (fail_on["example"], fail_on["pattern_hint"]) == \
        ("h02,h05", "server names separated by commas")


@pytest.mark.browser
def test_item_9_the_form_shows_the_example_the_hint_and_the_detail_on_demand(
        browser, live_server_factory, sshd_fleet, tmp_path):
    console = start_console(live_server_factory, sshd_fleet, tmp_path)
    page = browser.new_page()
    log_in(page, console.url)
    page.select_option("#runbook", "flaky")

    field = page.locator("#param-fail_on")
    expect(field).to_have_attribute("placeholder", "h02,h05")
    expect(page.locator("#param-fail_on-hint")).to_have_text(
        "server names separated by commas, like h02,h05")
    field.fill("H02")
    page.click("#preview-button")
    error = page.locator("#form-error")
    expect(error).to_contain_text(
        "fail_on must be server names separated by commas, like h02,h05")
    detail = error.locator("details.error-detail")
    expect(detail.locator("code")).to_be_hidden()
    detail.locator("summary").click()
    expect(detail.locator("code")).to_have_text(
        "parameter 'fail_on' value 'H02' does not match ^[a-z0-9,-]{1,200}$")
    expect(page.locator("#param-ticks-hint")).to_have_text(
        "a whole number below 1000, like 4")


# --- item 12: each server mode shows only what it uses -----------------------------------


@pytest.mark.browser
def test_item_12_each_server_mode_shows_only_what_it_uses(
        browser, live_server_factory, sshd_fleet, tmp_path):
    console = start_console(live_server_factory, sshd_fleet, tmp_path)
    page = browser.new_page()
    log_in(page, console.url)
    tags, servers = page.locator("#tag-picker"), page.locator("#server-list-picker")
    summary = page.locator("#target-summary")

    expect(page.locator("#target-all")).to_be_checked()
    expect(tags).to_be_hidden()
    expect(servers).to_be_hidden()
    expect(summary).to_have_text("Every server: 8.")
    page.check("#target-tags")
    expect(tags).to_be_visible()
    expect(servers).to_be_hidden()
    page.check("#tag-even")
    expect(summary).to_have_text("4 server(s) with tag even: h02, h04, h06, h08")
    page.check("#target-servers")
    expect(servers).to_be_visible()
    expect(tags).to_be_hidden()
    page.check("#server-h03")
    expect(summary).to_have_text("1 server(s) chosen")
    page.check("#target-all")

    expect(tags).to_be_hidden()
    expect(servers).to_be_hidden()
    expect(summary).to_have_text("Every server: 8.")


@pytest.mark.browser
def test_item_12_a_mode_chosen_before_the_script_ran_shows_its_fields(
        browser, live_server_factory, sshd_fleet, tmp_path):
    """A quick click before dashboard.js has run (or the browser restoring the form on
    Back) leaves a radio checked without a change event: the page must follow it."""
    console = start_console(live_server_factory, sshd_fleet, tmp_path)
    page = browser.new_page()
    log_in(page, console.url)

    def checked_first(route):
        script = route.fetch().text()
        route.fulfill(body="document.getElementById('run-kind-adhoc').checked = true;\n"
                      + script, content_type="text/javascript")

    page.route("**/js/dashboard.js*", checked_first)
    page.reload()

    expect(page.locator("#adhoc-command")).to_be_visible()
    expect(page.locator("#runbook")).to_be_hidden()
