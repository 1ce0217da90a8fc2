"""Issue 32, item 7 in the browser: after a canary, the servers behind a paused rollout
are "pending rollout to <build>" (neutral, a link to the job), not drift; once the
rollout stops there, the canary is the one that drifts from its tag's agreed build, and
the page says how that build is chosen. Real console, real OpenSSH servers, Chromium at
1440 and 390 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.console_world import (
    EIGHT_SERVERS,
    LONG,
    VIEWPORTS,
    finished_job,
    job_of,
    log_in,
    start_console,
    start_job,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

SERVERS = EIGHT_SERVERS


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    return start_console(live_server_factory, sshd_fleet, tmp_path)


def paused_canary(console, http, version: str) -> int:
    """``versioned`` to ``version`` on all eight servers, paused after a canary of one."""
    job_id = start_job(console, http, {
        "runbook": "versioned", "params": {"version": version}, "servers": SERVERS,
        "strategy": {"batches": [1], "gate": "manual"}})
    wait_until(lambda: job_of(console, http, job_id)["status"] == "paused", 60,
               f"job {job_id} to pause at the gate")
    return job_id


def row(page, name: str):
    return page.locator(f'#servers tr[data-server="{name}"]')


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_servers_behind_a_paused_canary_are_pending_and_a_stopped_canary_drifts(
        browser, console, viewport):
    http = console.login()
    first = start_job(console, http, {"runbook": "versioned",
                                      "params": {"version": "1.4.8"}, "servers": SERVERS})
    assert finished_job(console, http, first)["status"] == "succeeded"
    job_id = paused_canary(console, http, "1.4.9")
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/servers")

    canary = row(page, "h01")
    expect(canary).to_have_attribute("data-version", "1.4.9", timeout=LONG)
    expect(canary).to_have_attribute("data-drift", "false")
    expect(canary.locator(".build-pending")).to_have_count(0)
    for name in SERVERS[1:]:
        expect(row(page, name)).to_have_attribute("data-drift", "false")
        pending = row(page, name).locator(".build-pending")
        expect(pending).to_have_text("pending rollout to 1.4.9")
        expect(pending).to_have_class("badge status-pending build-pending")  # neutral
        expect(row(page, name).locator(f'.server-version a[href="/jobs/{job_id}"]')
               ).to_be_visible()
    expect(page.locator("#drift-count")).to_have_text("(0)")
    expect(page.locator(".build-drift")).to_have_count(0)
    expect(page.locator("#drift-rule")).to_contain_text(
        "the build most of the servers sharing a tag with it run (a tie goes to the "
        "newer build)")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    paused = {r["name"]: r for r in http.get(f"{console.url}/api/servers",
                                             timeout=30).json()["servers"]}
    assert {(r["rollout_job_id"], r["rollout_version"], r["drift"])
            for r in paused.values()} == {(job_id, "1.4.9", False)}

    # The rollout stops at the gate: live, the canary is the server off its tag's build.
    answer = http.post(f"{console.url}/api/jobs/{job_id}/abort", timeout=30)
    assert answer.status_code == 200, answer.text
    assert finished_job(console, http, job_id)["status"] != "paused"
    expect(canary).to_have_attribute("data-drift", "true", timeout=LONG)
    expect(canary.locator(".build-drift")).to_be_visible()
    expect(canary.locator(".server-version")).to_contain_text("agreed: 1.4.8")
    expect(page.locator("#drift-count")).to_have_text("(1)")
    expect(page.locator(".build-pending")).to_have_count(0)
    for name in SERVERS[1:]:
        expect(row(page, name)).to_have_attribute("data-drift", "false")

    rows = {r["name"]: r for r in http.get(f"{console.url}/api/servers",
                                           timeout=30).json()["servers"]}
    assert (rows["h01"]["drift"], rows["h01"]["agreed_version"],
            rows["h01"]["rollout_job_id"]) == (True, "1.4.8", None)
    assert {rows[name]["drift"] for name in SERVERS[1:]} == {False}
