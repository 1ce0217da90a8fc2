"""The live console in Chromium against a real server and real sshd: huge output stays
responsive and bounded, long-polling when websockets are refused, tabs in sync,
catching up after a network cut, ad-hoc commands."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.support.console_proxy import Proxy
from tests.support.console_world import (
    LONG,
    log_in,
    logs_from_events,
    query_db,
    rendered_logs,
    run_from_dashboard,
    start_console,
    start_job,
    stored_events,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
HOSTS = [f"h{i:02d}" for i in range(1, 9)]


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    return start_console(live_server_factory, sshd_fleet, tmp_path)


@pytest.fixture
def proxies():
    started: list[Proxy] = []

    def start(port: int, **options) -> Proxy:
        started.append(Proxy(port, **options))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def heap_used(page) -> float:
    """The page's live JavaScript heap in bytes, after a garbage collection."""
    session = page.context.new_cdp_session(page)
    session.send("HeapProfiler.collectGarbage")
    session.send("Performance.enable")
    metrics = session.send("Performance.getMetrics")["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")


def test_200k_lines_stay_responsive_bounded_and_scroll_back_to_the_start(browser, console):
    page = browser.new_page()
    log_in(page, console.url)
    job_id = run_from_dashboard(page, "flood", {"lines": "25000", "bursts": "40"})
    expect(page.locator("body")).to_have_attribute("data-log-rows", re.compile(r"^\d{5,}$"),
                                                    timeout=LONG)

    took = []
    for name in ["h05", "h02", "h07"]:
        assert page.locator("#job-status").text_content() == "running"
        row = page.locator(f'#hosts tr[data-host="{name}"]')
        started = time.monotonic()
        row.locator(".host-name").click()
        expect(row).to_have_class(re.compile(r"\bselected\b"), timeout=1000)
        expect(page.locator(f'section.log-section[data-host="{name}"]')).to_be_visible(
            timeout=1000)
        took.append(time.monotonic() - started)

    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    http = console.login()
    events = stored_events(console, http, job_id)
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(events[-1]["seq"]))
    stats = page.evaluate("() => window.patchbay.logStats()")
    dom_rows = page.locator(".log-row").count()
    heap = heap_used(page)

    page.locator('#hosts tr[data-host="h03"] .host-name').click()
    log = page.locator('.host-log[data-host="h03"]')
    log.focus()
    page.keyboard.press("Home")
    expect(log.locator(".line").first).to_have_text("h03 line 1")
    expect(log.locator(".line").nth(5)).to_have_text("h03 line 6")
    page.keyboard.press("End")
    expect(log.locator(".line").last).to_have_text("h03 line 25000")
    page.fill("#search-text", "H03 LINE 12345")
    page.press("#search-text", "Enter")
    expect(page.locator("#search-summary")).to_have_text("1 matching line on h03")
    page.locator("#search-list .search-hit").click()
    expect(log.locator(".line", has_text=re.compile(r"^h03 line 12345$"))).to_be_visible()
    expect(log.locator(".line mark").first).to_have_text("h03 line 12345")

    download = http.get(f"{console.url}/jobs/{job_id}/log.txt", stream=True, timeout=60)
    output_lines = sum(1 for line in download.iter_lines(decode_unicode=True)
                       if re.match(r"\[h\d\d stdout\] h\d\d line \d+$", line))

    assert max(took) < 1.0, took
    assert stats["rows"] >= 200_000
    assert stats["held"] <= 61_000, stats
    assert dom_rows < 600, dom_rows
    assert heap < 48 * 2**20, heap
    assert output_lines == 200_000
    assert sum(len(lines) for lines in logs_from_events(events).values()) == 200_000
    assert query_db(console, "SELECT status FROM jobs WHERE id = ?", job_id) == [("succeeded",)]


def test_page_streams_everything_over_long_polling_when_websockets_are_refused(
        browser, console, proxies):
    proxy = proxies(console.port, refuse_websocket=True)
    page = browser.new_page()
    log_in(page, proxy.url)
    badge = page.locator("#connection-state")
    expect(badge).to_have_text("connected (polling)")
    wait_until(lambda: proxy.websocket_refusals >= 1, what="a refused websocket upgrade")

    job_id = run_from_dashboard(page, "ticker", {"ticks": "30"})
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)

    events = stored_events(console, console.login(), job_id)
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(events[-1]["seq"]))
    expect(badge).to_have_text("connected (polling)")
    expect(page.locator("#stream-health")).to_have_attribute("data-transport", "polling")
    assert rendered_logs(page, HOSTS) == logs_from_events(events)
    assert proxy.websocket_refusals >= 2 and proxy.websocket_passed == 0


def test_a_job_started_in_one_tab_appears_and_streams_in_another(browser, console):
    context = browser.new_context()
    first = context.new_page()
    log_in(first, console.url)
    second = context.new_page()
    second.goto(f"{console.url}/jobs")
    expect(second.locator("#connection-state")).to_have_text(re.compile(r"^connected"))

    job_id = run_from_dashboard(first, "ticker", {"ticks": "60"})

    row = second.locator(f'#jobs tr[data-job-id="{job_id}"]')
    expect(row).to_be_visible()
    expect(row.locator(".job-latest")).to_contain_text(re.compile(r"\[h0\d\] (tick|tock) \d+"))
    expect(row.locator(".job-status-cell")).to_have_text("succeeded", timeout=LONG)
    expect(row.locator(".job-progress")).to_have_text("8 / 8 succeeded")
    row.locator(f'a[href$="/jobs/{job_id}"]').click()
    expect(second.locator("#job-status")).to_have_text("succeeded")
    events = stored_events(console, console.login(), job_id)
    expect(second.locator("body")).to_have_attribute("data-applied-seq",
                                                      str(events[-1]["seq"]))
    assert rendered_logs(second, HOSTS) == logs_from_events(events)


class ReceivedBytes:
    """Bytes a page receives over its Socket.IO connection (websocket frames and long-poll
    answers), counted by Chromium (CDP Network events)."""

    def __init__(self, page) -> None:
        self.total = 0
        self._polls: set[str] = set()
        session = page.context.new_cdp_session(page)
        session.on("Network.webSocketFrameReceived",
                   lambda e: self._add(len(e["response"]["payloadData"].encode())))
        session.on("Network.requestWillBeSent", lambda e: self._poll(e))
        session.on("Network.dataReceived", lambda e: self._add(
            e["dataLength"] if e["requestId"] in self._polls else 0))
        session.send("Network.enable")

    def _poll(self, event: dict) -> None:
        if "/socket.io/" in event["request"]["url"]:
            self._polls.add(event["requestId"])

    def _add(self, count: int) -> None:
        self.total += count


def test_a_dashboard_open_during_a_million_line_job_gets_its_progress_not_its_output(
        browser, console):
    page = browser.new_page()
    log_in(page, console.url)
    expect(page.locator("#connection-state")).to_have_text(re.compile(r"^connected"))
    received = ReceivedBytes(page)
    http = console.login()
    job_id = start_job(console, http, {"runbook": "flood", "tags": ["test"],
                                       "params": {"lines": "125000", "bursts": "25"}})

    row = page.locator(f'#recent-jobs tr[data-job-id="{job_id}"]')
    expect(row).to_be_visible()
    expect(row.locator(".job-latest")).to_contain_text(re.compile(r"\[h0\d\] h0\d line \d+"),
                                                       timeout=LONG)
    expect(row.locator(".job-status-cell")).to_have_text("succeeded", timeout=LONG)
    expect(row.locator(".job-progress")).to_have_text("8 / 8 succeeded")
    lines = query_db(console, "SELECT SUM(json_array_length(data, '$.lines')) FROM job_events"
                              " WHERE job_id = ? AND type = 'output'", job_id)[0][0]

    assert lines == 1_000_000
    assert received.total < 200_000, received.total


def test_network_cut_mid_job_reconnects_and_catches_up_with_no_gap_or_duplicate(
        browser, console, proxies):
    proxy = proxies(console.port)
    http = console.login()
    page = browser.new_page()
    log_in(page, proxy.url)
    job_id = run_from_dashboard(page, "ticker", {"ticks": "120"})
    expect(page.locator(".host-log .line").first).to_be_attached(timeout=LONG)
    badge = page.locator("#connection-state")
    expect(badge).to_have_text("connected (websocket)")

    proxy.cut()
    # The status line says why: the cut closes the connection, then the attempts fail.
    said_why = re.compile(r"reconnecting… \((connection lost|connection error|"
                          r"the console did not answer)\)")
    expect(badge).to_have_text(said_why)
    expect(page.locator("#stream-health")).to_contain_text(said_why)
    at_cut = int(page.locator("body").get_attribute("data-applied-seq"))
    wait_until(lambda: http.get(f"{console.url}/api/jobs/{job_id}").json()["job"]["last_seq"]
               > at_cut + 100, what="the job running on while the page is cut off")
    proxy.restore()

    expect(badge).to_have_text("connected (websocket)", timeout=20_000)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    events = stored_events(console, http, job_id)
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(events[-1]["seq"]))
    health = page.locator("#stream-health")
    expect(health).to_have_attribute("title", re.compile(r"After reconnecting, caught up"))
    assert int(health.get_attribute("data-reconnects")) >= 1
    assert int(health.get_attribute("data-caught-up")) > 100
    assert rendered_logs(page, HOSTS) == logs_from_events(events)


def test_adhoc_command_on_three_hosts_streams_and_lands_in_history(browser, console,
                                                                    tmp_path):
    release = tmp_path / "release"  # the servers are local: the command waits for it
    command = ('set -- $SSH_CONNECTION; for i in 1 2 3 4 5; do echo "$3 says $i"; '
               f'done; until [ -e {release} ]; do sleep 0.05; done; echo "done on $3" >&2')
    page = browser.new_page()
    log_in(page, console.url)
    page.check("#run-kind-adhoc")
    page.fill("#adhoc-command", command)
    page.check("#target-servers")
    for name in ["h01", "h02", "h03"]:
        page.check(f"#server-{name}")
    page.click("#run-button")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])

    first_line = page.locator('.host-log[data-host="h02"] .line').first
    expect(first_line).to_have_text("127.0.0.102 says 1", timeout=LONG)
    expect(page.locator("#job-status")).to_have_text("running")  # held by the file
    release.touch()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    expect(page.locator("#hosts tr[data-host]")).to_have_count(3)
    events = stored_events(console, console.login(), job_id)
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(events[-1]["seq"]))
    rendered = rendered_logs(page, ["h01", "h02", "h03"])

    page.goto(f"{console.url}/jobs?kind=adhoc")
    row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".kind-adhoc")).to_contain_text("set -- $SSH_CONNECTION")
    expect(row.locator(".job-status-cell")).to_have_text("succeeded")
    assert rendered == logs_from_events(events)
    assert rendered["h03"] == [f"127.0.0.103 says {i}" for i in range(1, 6)] + \
        ["done on 127.0.0.103"]
    assert query_db(console, "SELECT kind, runbook, params, status FROM jobs WHERE id = ?",
                    job_id) == [("adhoc", "adhoc", '{"command": ' + _json(command) + "}",
                                 "succeeded")]


def _json(text: str) -> str:
    import json

    return json.dumps(text)
