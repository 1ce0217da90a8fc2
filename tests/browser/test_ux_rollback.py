"""Issue 32, item 8 in the browser: after rolling a server back, Roll back offers the
last build that succeeded there before the current one, never the build just rejected,
and says which and why; a row's History unfolds (by keyboard too) the builds it ran.
Real console, real OpenSSH servers, Chromium at 1440 and 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.console_world import (
    LONG,
    VIEWPORTS,
    finished_job,
    log_in,
    start_console,
    start_job,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    return start_console(live_server_factory, sshd_fleet, tmp_path)


def deploy(console, http, version: str) -> int:
    job_id = start_job(console, http, {"runbook": "versioned", "servers": ["h01"],
                                       "params": {"version": version}})
    assert finished_job(console, http, job_id)["status"] == "succeeded"
    return job_id


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_a_second_roll_back_offers_the_last_good_build_and_the_history_unfolds(
        browser, console, viewport):
    http = console.login()
    jobs = [deploy(console, http, version) for version in ("1.0.6", "1.0.7", "1.0.8")]
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/servers")
    row = page.locator('#servers tr[data-server="h01"]')
    expect(row.locator(".build-rollback")).to_have_text(
        f"Roll back to 1.0.7, the last build that succeeded here before 1.0.8 "
        f"(job #{jobs[1]})")

    row.locator(".rollback-one").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text(f"h01: 1.0.8 → 1.0.7 (the last build that succeeded "
                                   f"there, job #{jobs[1]})")
    page.click("#confirm-accept")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    back = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)

    page.goto(f"{console.url}/servers")
    expect(row).to_have_attribute("data-version", "1.0.7")
    expect(row).to_have_attribute("data-rollback-version", "1.0.6")
    expect(row.locator(".build-rollback")).to_have_text(
        f"Roll back to 1.0.6, the last build that succeeded here before 1.0.7 "
        f"(job #{jobs[0]})")
    expect(row.locator(".server-version")).not_to_contain_text("1.0.8")
    row.locator(".rollback-one").click()
    expect(dialog).to_contain_text("h01: 1.0.7 → 1.0.6")
    expect(dialog).not_to_contain_text("1.0.8")
    page.click("#confirm-dismiss")
    expect(dialog).to_be_hidden()

    # The history, newest first, unfolded from the keyboard.
    history = row.locator(".build-history")
    expect(history.locator(".build-history-list")).to_be_hidden()
    history.locator("summary").focus()
    page.keyboard.press("Enter")
    items = history.locator(".build-history-list li")
    expect(items).to_have_count(4)
    assert [items.nth(i).get_attribute("data-version") for i in range(4)] == [
        "1.0.7", "1.0.8", "1.0.7", "1.0.6"]
    expect(items.nth(0)).to_contain_text(f"rollback job #{back}")
    expect(items.nth(0)).to_contain_text("succeeded here")
    expect(items.nth(3)).to_contain_text(f"job #{jobs[0]}")
    expect(items.nth(0).locator(f'a[href="/jobs/{back}"]')).to_be_visible()
    expect(items.nth(0).locator("time")).to_have_text(re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # Unfolded, it follows the server: a rollback from elsewhere adds 1.0.6 on top, and
    # nothing good is left below it to roll back to.
    again = http.post(f"{console.url}/api/servers/h01/rollback", timeout=30)
    assert again.status_code == 201, again.text
    assert finished_job(console, http, again.json()["job_id"])["status"] == "succeeded"
    expect(row).to_have_attribute("data-version", "1.0.6", timeout=LONG)
    expect(items).to_have_count(5)
    expect(items.nth(0)).to_have_attribute("data-version", "1.0.6")
    expect(row.locator(".rollback-one")).to_be_hidden()
    expect(row.locator(".build-rollback")).to_have_count(0)
    history.locator("summary").focus()
    page.keyboard.press("Enter")  # folds again
    expect(history.locator(".build-history-list")).to_be_hidden()


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_a_rollback_job_page_and_its_live_row_read_as_a_rollback(browser, console,
                                                                   viewport):
    """Issue 32, item 5: the history row that appears live and the job page of a
    rollback say "Roll back (versioned)" and 1.0.8 → 1.0.7, list the one step it ran
    and no empty version parameter."""
    http = console.login()
    for version in ("1.0.7", "1.0.8"):
        deploy(console, http, version)
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs")
    expect(page.locator("#jobs tbody tr[data-job-id]")).to_have_count(2)

    answer = http.post(f"{console.url}/api/servers/h01/rollback", timeout=30)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    live = page.locator(f'#jobs tr[data-job-id="{job_id}"]')  # appears without a reload
    expect(live.locator(".job-runbook")).to_have_text("Roll back (versioned)", timeout=LONG)
    expect(live.locator(".job-builds")).to_have_text("1.0.8 → 1.0.7", timeout=LONG)
    expect(live.locator(".params")).to_have_text(re.compile(r"^fail_on=none nap=0\s*$"))
    assert finished_job(console, http, job_id)["status"] == "succeeded"

    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page).to_have_title(f"Job #{job_id} · Roll back (versioned) · Patchbay")
    expect(page.locator("#job-title")).to_have_text("Roll back (versioned)")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    builds = page.locator("#job-builds")
    expect(builds).to_have_text("1.0.8 → 1.0.7")
    expect(page.locator("#job-steps .step-chip")).to_have_text(["roll back"])
    expect(page.locator(".job-meta .params")).to_have_text("fail_on=none nap=0")
    expect(page.locator(".job-meta")).not_to_contain_text("version=")
    expect(page.locator("#hosts tbody tr")).to_have_count(1)
    box = builds.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
