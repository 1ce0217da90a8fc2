"""Issue 32, item 9 in the browser: Run on servers all held by another job says how many
are held and by which job (a link to it), and marks no field: the choice of servers was
fine. Real console, real OpenSSH servers, Chromium at 1440 and 390 px."""

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


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_running_on_servers_held_by_a_job_names_how_many_and_links_the_job(
        browser, console, tmp_path, viewport):
    flag = tmp_path / "go"
    http = console.login()
    holder = start_job(console, http, {"runbook": "wait-for-file",
                                       "params": {"path": str(flag)}, "servers": SERVERS})
    wait_until(lambda: {h["status"] for h in job_of(console, http, holder)["hosts"]}
               == {"running"}, 60, f"job {holder} to hold every server")
    try:
        page = browser.new_context(viewport=viewport).new_page()
        log_in(page, console.url)
        page.select_option("#runbook", "basic")
        page.fill("#param-message", "hello")
        page.check("#target-all")
        page.click("#run-button")

        error = page.locator("#form-error")
        expect(error).to_contain_text(
            f"8 of the 8 servers chosen are busy: h01, h02, h03, h04, h05 and 3 more in "
            f"running job #{holder}", timeout=LONG)
        link = error.locator(f'a[href="/jobs/{holder}"]')
        expect(link).to_have_text(f"job #{holder}")
        expect(link).to_be_visible()
        expect(page.locator("#server-picker")).not_to_have_attribute("aria-invalid", "true")
        expect(page.locator('#rollout-form [aria-invalid="true"]')).to_have_count(0)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert [job["id"] for job in http.get(f"{console.url}/api/jobs",
                                              timeout=30).json()["jobs"]] == [holder]
    finally:
        flag.touch()
    assert finished_job(console, http, holder)["status"] == "succeeded"
