"""History, downloads and the servers page in Chromium against a real server: what the
pages show and what a download holds match the database."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.support.console_world import (
    LONG,
    log_in,
    query_db,
    start_console,
    stored_events,
)
from tests.support.sshd_fleet import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
STATUSES = ["succeeded", "failed", "cancelled", "interrupted"]
RUNBOOKS = ["game-update", "basic", "flaky"]


def add_old_jobs(server, count: int) -> None:
    """Finished jobs from the past weeks, written straight into the console's database."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from models import Job, JobHost, User

    engine = create_engine(server.env["DATABASE_URL"])
    now = datetime.now(UTC).replace(tzinfo=None)
    with Session(engine) as session:
        users = {u.username: u.id for u in session.scalars(select(User))}
        for i in range(count):
            adhoc = i % 7 == 3
            created = now - timedelta(days=count - i, hours=1)
            job = Job(runbook="adhoc" if adhoc else RUNBOOKS[i % 3],
                      kind="adhoc" if adhoc else "runbook",
                      params={"command": f"uptime # {i}"} if adhoc else {"n": str(i)},
                      strategy={"parallel": 2}, status=STATUSES[i % 4],
                      created_by_id=users["bob" if i % 2 else "alice"], created_at=created,
                      finished_at=created + timedelta(seconds=10 + i), last_seq=0)
            session.add(job)
            session.flush()
            for position, status in enumerate([STATUSES[i % 4], "succeeded"]):
                session.add(JobHost(job_id=job.id, name=f"h0{position + 1}", position=position,
                                    status=status))
        session.commit()
    engine.dispose()


def shown_ids(page: Page) -> list[int]:
    return [int(i) for i in page.locator("#jobs tbody tr[data-job-id]")
            .evaluate_all("rows => rows.map(r => r.dataset.jobId)")]


def filter_history(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        control = page.locator(f"#filter-{name}")
        if control.evaluate("node => node.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    page.click("#history-filters [type=submit]")


def finish(server, http, job_id: int) -> None:
    wait_until(lambda: http.get(f"{server.url}/api/jobs/{job_id}").json()["job"]["status"]
               != "running", timeout=60, what=f"job {job_id} finished")


def output_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\[\S+ (stdout|stderr)\] ", line)]


def expected_output(events: list[dict], host: str | None = None) -> list[str]:
    return [f"[{e['host']} {e['data']['stream']}] {line}" for e in events
            if e["type"] == "output" and host in (None, e["host"]) for line in e["data"]["lines"]]


def test_history_filters_pages_and_downloaded_logs_match_the_database(
        browser, live_server_factory, sshd_fleet, tmp_path):
    console = start_console(live_server_factory, sshd_fleet, tmp_path)
    add_old_jobs(console, 30)
    alice, bob = console.login("alice"), console.login("bob")
    ok = alice.post(f"{console.url}/api/jobs", json={
        "runbook": "basic", "params": {"message": "hello"}, "servers": ["h01"]}).json()["job_id"]
    failed = bob.post(f"{console.url}/api/jobs", json={
        "runbook": "basic", "params": {"message": "hi", "fail_on": "h02"},
        "servers": ["h02", "h03"]}).json()["job_id"]
    finish(console, alice, ok)
    finish(console, bob, failed)
    page = browser.new_page()
    log_in(page, console.url)

    page.goto(f"{console.url}/jobs")
    expect(page.locator("#history-total")).to_contain_text("32 jobs")
    first_page = shown_ids(page)
    page.click("#page-older")
    second_page = shown_ids(page)
    filter_history(page, status="failed")
    failed_ids = shown_ids(page)
    expect(page.locator(f'#jobs tr[data-job-id="{failed}"] .host-counts')).to_have_text(
        re.compile(r"1 failed\s+1 succeeded"))
    page.click("#clear-filters")
    filter_history(page, user="bob", runbook="basic")
    bobs_basic = shown_ids(page)
    page.click("#clear-filters")
    today = datetime.now(UTC).date()
    since, until = str(today - timedelta(days=20)), str(today - timedelta(days=10))
    filter_history(page, since=since, until=until, kind="runbook")
    dated = shown_ids(page)

    def ids(where: str = "1 = 1", *args) -> list[int]:
        return [row[0] for row in query_db(
            console, f"SELECT jobs.id FROM jobs LEFT JOIN users ON users.id = created_by_id "
                     f"WHERE {where} ORDER BY jobs.id DESC", *args)]

    assert first_page == ids()[:25] and second_page == ids()[25:]
    assert failed_ids == ids("status = 'failed'")
    assert bobs_basic == ids("username = 'bob' AND runbook = 'basic'") and failed in bobs_basic
    assert dated == ids("kind = 'runbook' AND jobs.created_at >= ? AND jobs.created_at < ?",
                        since, str(today - timedelta(days=9)))
    assert 0 < len(dated) < 12

    page.goto(f"{console.url}/jobs/{failed}")
    expect(page.locator("#job-status")).to_have_text("failed", timeout=LONG)
    with page.expect_download() as whole:
        page.click("#download-job-log")
    with page.expect_download() as one:
        page.click('section.log-section[data-host="h02"] .log-download')
    events = stored_events(console, bob, failed)
    whole_text = open(whole.value.path(), encoding="utf-8").read()  # noqa: SIM115
    one_text = open(one.value.path(), encoding="utf-8").read()  # noqa: SIM115

    assert whole.value.suggested_filename == f"job-{failed}.log"
    assert one.value.suggested_filename == f"job-{failed}-h02.log"
    assert output_lines(whole_text) == expected_output(events)
    assert output_lines(one_text) == expected_output(events, "h02")
    assert "[h02 stderr] boom on h02" in one_text.splitlines()
    assert "[h02] finished: failed, exit code 3" in one_text
    assert "[h03" not in one_text


def test_servers_page_shows_reachability_jobs_and_results_live(
        browser, live_server_factory, sshd_fleet, tmp_path):
    dark_port = free_port()
    console = start_console(
        live_server_factory, sshd_fleet, tmp_path,
        extra=[{"name": "dark", "host": "127.0.0.1", "port": dark_port, "user": "root",
                "tags": ["spare"]}],
        env={"PATCHBAY_FLEET_PROBE_INTERVAL": "0.5"})
    http = console.login()
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/servers")
    h01 = page.locator('#servers tr[data-server="h01"]')
    dark = page.locator('#servers tr[data-server="dark"]')

    expect(h01).to_have_attribute("data-reachable", "true")
    expect(dark).to_have_attribute("data-reachable", "false")
    expect(dark.locator(".server-reach")).to_contain_text("connection refused")
    with socket.create_server(("127.0.0.1", dark_port)):
        expect(dark).to_have_attribute("data-reachable", "true")
    job_id = http.post(f"{console.url}/api/jobs", json={
        "runbook": "sleepy", "params": {"seconds": "30"}, "servers": ["h01"]}).json()["job_id"]
    expect(h01).to_have_attribute("data-held-by", str(job_id))
    expect(h01.locator(".server-held")).to_contain_text(f"in job #{job_id}")
    http.post(f"{console.url}/api/jobs/{job_id}/cancel")
    expect(h01).to_have_attribute("data-held-by", "", timeout=LONG)
    expect(h01).to_have_attribute("data-last-status", "cancelled")
    expect(h01.locator(".server-last-job")).to_contain_text(f"#{job_id}")
    expect(dark).to_have_attribute("data-reachable", "false")

    assert query_db(console, "SELECT reachable, last_checked IS NOT NULL FROM servers "
                             "WHERE name = 'h01'") == [(1, 1)]
