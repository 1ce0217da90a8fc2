"""A job waiting for a person is hard to miss (issue #32, item 10): every page's header
says "1 rollout waiting for you" and links to the job, live (the jobs:waiting broadcast)
and on first paint; the dashboard starts with it and its Promote; both go once it is
promoted. Real console process, real OpenSSH servers, Chromium at 1440 and 390 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, write_inventory
from tests.support.console_world import (
    LONG,
    USERS,
    VIEWPORTS,
    finished_job,
    log_in,
    paused_rollout,
    runbook_dir,
)

pytestmark = pytest.mark.browser
WIDTHS = pytest.mark.parametrize("viewport", VIEWPORTS, ids=["desktop", "phone"])


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, runbook_dir=runbook_dir(tmp_path),
                               users=USERS + [("vera", PASSWORD, "viewer")])


def in_viewport(page: Page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and \
        box["y"] + box["height"] <= size["height"] and box["x"] + box["width"] <= size["width"]


@WIDTHS
def test_the_header_of_another_page_says_a_rollout_waits_and_links_to_it(
        browser, console, viewport):
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/servers")
    link = page.locator("#waiting-link")
    expect(link).to_be_hidden()

    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02", "h03"])
    expect(link).to_have_text("1 rollout waiting for you", timeout=LONG)  # live
    assert in_viewport(page, "#waiting-link")
    link.click()
    expect(page).to_have_url(f"{console.url}/jobs/{job_id}")

    page.goto(f"{console.url}/account")  # a page with no socket of its own: first paint
    expect(link).to_have_text("1 rollout waiting for you")
    expect(link).to_have_attribute("href", f"/jobs/{job_id}")
    assert in_viewport(page, "#waiting-link")
    answer = http.post(f"{console.url}/api/jobs/{job_id}/promote", timeout=30)
    expect(link).to_be_hidden(timeout=LONG)  # live there too

    assert answer.status_code == 200
    assert finished_job(console, http, job_id)["status"] == "succeeded"


@WIDTHS
def test_the_dashboard_starts_with_the_waiting_job_and_promotes_it(browser, console,
                                                                   viewport):
    http = console.login()
    job_id = paused_rollout(console, http, ["h04", "h05", "h06"])
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url)

    panel = page.locator("#waiting-panel")
    expect(panel.locator("h2")).to_have_text("Waiting for you")
    expect(panel.locator(f'.waiting-item[data-job-id="{job_id}"]')).to_contain_text(
        "paused after the canary (1 server); promoting starts batch 2 (2 servers)")
    promote = panel.get_by_role("button", name="Promote: start batch 2")
    assert in_viewport(page, "#waiting-panel button[data-action=promote]")
    expect(page.locator("#waiting-link")).to_have_text("1 rollout waiting for you")
    promote.click()
    expect(page.locator("#confirm-title")).to_have_text(f"Promote job #{job_id}?")
    expect(page.locator("#confirm-dialog")).to_contain_text(
        "Promote: batch 2 starts (2 servers: h05, h06).")
    page.click("#confirm-accept")

    expect(panel).to_be_hidden(timeout=LONG)
    expect(page.locator("#waiting-link")).to_be_hidden()
    assert finished_job(console, http, job_id)["status"] == "succeeded"


def test_a_viewer_reads_that_the_job_waits_for_an_operator(browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h07", "h08"])
    page = browser.new_page()
    log_in(page, console.url, "vera")

    expect(page.locator("#waiting-link")).to_have_text("1 rollout waiting for an operator")
    expect(page.locator("#waiting-panel h2")).to_have_text("Waiting for an operator")
    expect(page.locator(f'#waiting-panel .waiting-item[data-job-id="{job_id}"]')
           ).to_be_visible()
    expect(page.locator("#waiting-panel button")).to_have_count(0)
    http.post(f"{console.url}/api/jobs/{job_id}/abort", timeout=30)
    expect(page.locator("#waiting-panel")).to_be_hidden(timeout=LONG)
