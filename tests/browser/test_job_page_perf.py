"""The job page of a big job, in Chromium against a real server and real sshd: a replay
of hundreds of events is applied in slices that let other tasks run in between, and a
job of more than 100 servers (its rows laid out on their own, skipped off screen) still
shows every server and line, selects a server, shows all, searches and scrolls to a
line; reloaded, such a job shows every server's final status while building the log
sections only near the view. Structural checks only: no timings."""

from __future__ import annotations

import contextlib
import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.support.console_world import (
    LONG,
    finished_job,
    log_in,
    logs_from_events,
    rendered_logs,
    start_console,
    start_job,
    stored_events,
)

pytestmark = pytest.mark.browser
HOSTS = [f"h{i:02d}" for i in range(1, 9)]
ALIASES = [f"m{i:03d}" for i in range(1, 103)]  # with HOSTS: 110 servers

# Runs before the page's scripts: a chain of tasks (MessageChannel, so no timer clamping)
# noting each seq the page has applied (window.patchbay.renderedSeq()) until it is LAST.
# Applied in one task, a replay shows only 0 and LAST to it; applied in slices that yield,
# it shows seqs in between too.
PROBE = """
(() => {
  const seen = window.__appliedSeen = [];
  const channel = new MessageChannel();
  const started = performance.now();
  channel.port1.onmessage = () => {
    const applied = window.patchbay ? window.patchbay.renderedSeq() : 0;
    if (seen[seen.length - 1] !== applied) seen.push(applied);
    if (applied < LAST && performance.now() - started < 60000) channel.port2.postMessage(null);
  };
  channel.port2.postMessage(null);
})();
"""


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    # More servers than the fleet has addresses: names of their own on the same sshd.
    hosts = sshd_fleet.inventory_entries()
    extra = [{**hosts[i % len(hosts)], "name": name, "tags": ["alias"]}
             for i, name in enumerate(ALIASES)]
    return start_console(live_server_factory, sshd_fleet, tmp_path, extra=extra)


def test_a_replay_of_hundreds_of_events_is_applied_in_slices_and_shows_every_line(
        browser, console):
    http = console.login()
    job_id = start_job(console, http, {"runbook": "flood", "tags": ["test"],
                                       "params": {"lines": "400", "bursts": "40"}})
    job = finished_job(console, http, job_id)
    events = stored_events(console, http, job_id)
    last = events[-1]["seq"]
    # One replay page (at most 1,000 events and 1 MiB): whatever slices it, the page does.
    assert 300 < len(events) < 1000, len(events)

    page = browser.new_page()
    log_in(page, console.url)
    page.add_init_script(PROBE.replace("LAST", str(last)))
    page.goto(f"{console.url}/jobs/{job_id}")
    body = page.locator("body")
    expect(body).to_have_attribute("data-applied-seq", str(last), timeout=LONG)

    seen = page.evaluate("() => window.__appliedSeen")
    slices = page.evaluate("() => window.patchbay.slices()")
    assert seen[-1] == last, seen
    assert any(0 < seq < last for seq in seen), seen  # tasks ran between the slices
    assert slices["count"] >= 2 and slices["most"] < len(events), slices

    expect(page.locator("#job-status")).to_have_text(job["status"])
    for host in job["hosts"]:
        expect(page.locator(f'#hosts tr[data-host="{host["name"]}"]')).to_have_attribute(
            "data-status", host["status"])
    assert page.locator("#hosts tbody tr").count() == len(HOSTS)
    assert rendered_logs(page, HOSTS) == logs_from_events(events)


def _start_on_every_server(console, http, params: dict) -> int:
    """The basic runbook on all 110 servers, 55 at a time; returns the job id."""
    return start_job(console, http, {"runbook": "basic", "servers": HOSTS + ALIASES,
                                     "strategy": {"parallel": 55}, "params": params})


def test_a_job_of_more_than_100_servers_shows_every_row_selects_searches_and_scrolls(
        browser, console):
    servers = HOSTS + ALIASES
    http = console.login()
    job_id = _start_on_every_server(console, http, {"message": "hi", "fail_on": "m050"})
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")  # while it runs
    job = finished_job(console, http, job_id)
    events = stored_events(console, http, job_id)
    last = events[-1]["seq"]
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(last),
                                                   timeout=LONG)

    table = page.locator("#hosts")
    expect(table).to_have_class(re.compile(r"\bhosts-many\b"))
    rows = page.locator("#hosts tbody tr")
    assert rows.count() == len(servers)
    statuses = page.evaluate("""() => Object.fromEntries(Array.from(
        document.querySelectorAll("#hosts tbody tr"), (row) => [row.dataset.host,
        [row.dataset.status, row.hidden, row.querySelector(".host-status").textContent]]))""")
    assert statuses == {host["name"]: [host["status"], False, host["status"]]
                        for host in job["hosts"]}
    assert rows.first.get_attribute("data-host") == "m050"  # failed servers first
    # One grid for every row: each row's cells line up under the headers.
    far = page.locator('#hosts tr[data-host="m100"]')
    far.scroll_into_view_if_needed()
    columns = page.evaluate("""() => [document.querySelector("#hosts thead tr"),
        document.querySelector('#hosts tr[data-host="m100"]')].map((row) =>
        Array.from(row.children, (cell) => Math.round(cell.getBoundingClientRect().left)))""")
    assert columns[0] == columns[1], columns

    far.locator(".host-name").click()
    expect(far).to_have_class(re.compile(r"\bselected\b"))
    section = page.locator('section.log-section[data-host="m100"]')
    expect(section).to_be_visible()
    expect(page.locator("section.log-section:not([hidden])")).to_have_count(1)
    log = page.locator('.host-log[data-host="m100"]')
    log.focus()
    page.keyboard.press("End")
    expect(log.locator(".line").last).to_have_text("2.0.0")
    page.keyboard.press("Home")
    # Its first line as stored: stdout's "hello" and stderr's warning come in either order.
    first = logs_from_events(events)["m100"][0]
    assert first in ("hello from m100:  hi", "a warning on stderr"), first
    expect(log.locator(".line").first).to_have_text(first)

    page.click("#show-all-logs")
    expect(page.locator("section.log-section[hidden]")).to_have_count(0)
    expect(page.locator("#log-selection")).to_have_text("Showing all servers")

    page.fill("#search-text", "boom on m050")
    page.press("#search-text", "Enter")
    expect(page.locator("#search-summary")).to_have_text("1 matching line")
    page.locator("#search-list .search-hit").click()
    failed_log = page.locator('.host-log[data-host="m050"]')
    expect(failed_log.locator(".line mark")).to_have_text("boom on m050")
    expect(failed_log.locator(".line", has_text="boom on m050")).to_be_visible()


# The first log section in the view, once built (None while it is not).
SECTION_IN_VIEW = """() => {
  for (const section of document.querySelectorAll("section.log-section")) {
    const box = section.getBoundingClientRect();
    if (box.bottom > 0 && box.top < innerHeight) {
      return section.querySelector(".host-log") ? section.dataset.host : null;
    }
  }
  return null;
}"""


# Whether the log of arg[0] shows a tail of arg[1] (its lines), every row with its text.
TAIL_SHOWN = """([name, lines]) => {
  const rows = Array.from(document.querySelectorAll(`.host-log[data-host="${name}"] .line`),
                          (row) => row.textContent);
  return rows.length > 0 && rows.every((text, i) => text === lines[lines.length - rows.length + i]);
}"""


def assert_tail_shown(page, name: str, lines: list[str]) -> None:
    """The log of `name` shows the end of its output (its window of rows, following)."""
    shown = page.locator(f'.host-log[data-host="{name}"] .line')
    expect(shown.last).to_have_text(lines[-1])
    # Rows on screen may still wait for their text for a frame or two.
    with contextlib.suppress(PlaywrightTimeoutError):  # the assertion names what it saw
        page.wait_for_function(TAIL_SHOWN, arg=[name, lines], timeout=10_000)
    rendered = shown.all_text_contents()
    assert rendered and rendered == lines[-len(rendered):], (name, rendered)


def test_a_reloaded_job_of_more_than_100_servers_builds_only_the_logs_near_the_view(
        browser, console):
    servers = HOSTS + ALIASES
    http = console.login()
    job_id = _start_on_every_server(console, http, {"message": "hi"})
    job = finished_job(console, http, job_id)
    events = stored_events(console, http, job_id)
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")  # finished: the page replays its log
    expect(page.locator("body")).to_have_attribute("data-applied-seq",
                                                   str(events[-1]["seq"]), timeout=LONG)

    statuses = page.evaluate("""() => Object.fromEntries(Array.from(
        document.querySelectorAll("#hosts tr[data-host]"), (row) => [row.dataset.host,
        [row.dataset.status, row.querySelector(".host-status").textContent]]))""")
    assert statuses == {host["name"]: [host["status"], host["status"]]
                        for host in job["hosts"]}
    # Every server has its (empty) section; the view shows the table, so no log is built.
    expect(page.locator("section.log-section")).to_have_count(len(servers))
    assert page.locator(".host-log").count() < len(servers) // 2

    # Scrolled to, a log is built and shows its lines.
    lines = logs_from_events(events)
    page.locator('section.log-section[data-host="m090"]').scroll_into_view_if_needed()
    assert_tail_shown(page, "m090", lines["m090"])
    expect(page.locator('section.log-section[data-host="m090"] .badge').first) \
        .to_have_text("succeeded")

    # Down every log of the page: each one in view is built, never all of them at once.
    page.evaluate("() => document.getElementById('logs').scrollIntoView()")
    seen = set()
    while True:
        name = page.wait_for_function(SECTION_IN_VIEW).json_value()  # one look, not two
        seen.add(name)
        assert_tail_shown(page, name, lines[name])
        if page.evaluate("() => innerHeight + scrollY >= document.scrollingElement.scrollHeight"):
            break
        page.evaluate("() => scrollBy(0, innerHeight * 2)")
    assert len(seen) > 10, seen
    assert page.locator(".host-log").count() < len(servers)
