"""Issue 32, item 14: times in one convention on every page, in Chromium at 1440 and
390 px, in a browser whose zone is New York: the page says UTC, 24-hour
("2026-12-07 21:04:05 UTC") and the tooltip the local time ("Local time: 2026-12-07
16:04:05 EST") — the gate history on a paused canary's page (drawn by the page's script),
the job's start, and the jobs list (rendered by the server, and a row the list's script
adds for a job started while it is open)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, expect

from tests.support.console_world import (
    LONG,
    VIEWPORTS,
    log_in,
    paused_rollout,
    start_console,
    start_job,
)

pytestmark = pytest.mark.browser

ZONE = "America/New_York"
CONVENTION = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")


def assert_convention(time: Locator) -> None:
    """The <time> says its moment in UTC and titles it in New York's time."""
    expect(time).to_have_text(CONVENTION)
    expect(time).to_have_attribute("title", re.compile(r"^Local time: "))
    iso = time.get_attribute("datetime")
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    assert time.inner_text() == moment.strftime("%Y-%m-%d %H:%M:%S UTC"), iso
    local = moment.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S %Z")
    assert time.get_attribute("title") == "Local time: " + local, iso


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["desktop", "phone"])
def test_item_14_times_say_utc_with_the_local_time_in_the_tooltip(
        browser, live_server_factory, sshd_fleet, tmp_path, viewport):
    console = start_console(live_server_factory, sshd_fleet, tmp_path)
    http = console.login()
    paused = paused_rollout(console, http, ["h01", "h02"])
    context = browser.new_context(viewport=viewport, timezone_id=ZONE)
    page = context.new_page()
    assert page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone") == ZONE
    log_in(page, console.url)

    page.goto(f"{console.url}/jobs/{paused}")
    expect(page.locator("#job-status")).to_have_text("paused", timeout=LONG)
    gate = page.locator("#rollout-history .rollout-entry[data-kind=paused] time")
    expect(gate).to_have_count(1, timeout=LONG)
    assert_convention(gate)
    assert_convention(page.locator("main time").first)  # the job's start

    page.goto(f"{console.url}/jobs")
    listed = page.locator(f'#jobs tr[data-job-id="{paused}"] time')
    assert_convention(listed)
    added = start_job(console, http, {"command": "echo hi", "servers": ["h03"]})
    assert_convention(page.locator(f'#jobs tr[data-job-id="{added}"] time'))
    context.close()
