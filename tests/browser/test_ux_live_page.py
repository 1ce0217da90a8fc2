"""Issue #32, the live job page: running steps' bars grow as time passes (item 2), a
re-run offers only the servers still failing (item 13), Cancel and Abort say what each
does (item 12), a failed server is first thing under the status on a phone (item 18).
Real console process, real OpenSSH servers, Chromium at 1440 and 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, PROJECT, write_inventory
from tests.support.console_world import (
    LONG,
    VIEWPORTS,
    job_of,
    log_in,
    paused_rollout,
    runbook_dir,
    start_job,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
SCREENSHOTS = PROJECT / "test-artifacts" / "screenshots"

# A first step of 1.5 s, then a silent one of 6 s: no event comes while it runs.
TWO_SPEED = """\
name: two-speed
description: A short step, then a long silent one.
steps:
  - name: prepare
    run: sleep 1.5; echo prepared
  - name: download
    run: sleep 6; echo downloaded
"""

# Fails on a server while its mark file is there: the same job, run again, fixes it.
MEND = """\
name: mend
description: Fails on a server while its mark file is there.
params:
  dir:
    pattern: '^/[A-Za-z0-9_./-]{1,200}$'
steps:
  - name: check
    run: |
      if [ -e {{ params.dir }}/broken-{{ host.name }} ]; then echo broken >&2; exit 3; fi
      echo fine
"""

# A line longer than a job row shows, then a pause (the row shows the latest line of a
# running job only).
LONG_LINE = ("downloading build 1.4.9 from mirror-eu-west-3.example.net chunk 0001 of 0400 "
             "at 12.5 MB/s, eta 31 s, verifying signatures against the release key")
TALKER = f"""\
name: talker
description: Says one long line, then waits.
steps:
  - name: talk
    run: echo "{LONG_LINE}"; sleep 4
"""

# The page's Socket.IO socket, as window.pageSocket (to drop its connection in a test).
KEEP_SOCKET = """(() => {
  let real;
  Object.defineProperty(window, "io", { configurable: true, get: () => real, set(io) {
    real = Object.assign((...args) => (window.pageSocket = io(...args)), io);
  } });
})();"""

# The share of h01's bar each segment takes, as drawn.
SHARES = """() => {
  const segments = document.querySelectorAll('tr[data-host="h01"] .timeline-bar > span');
  const widths = Array.from(segments, (s) => s.getBoundingClientRect().width);
  const total = widths.reduce((a, b) => a + b, 0);
  return { shares: widths.map((w) => total ? w / total : 0),
           running: Array.from(segments, (s) => s.classList.contains("status-running")) };
}"""


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    books = runbook_dir(tmp_path)
    (books / "two-speed.yml").write_text(TWO_SPEED)
    (books / "mend.yml").write_text(MEND)
    (books / "talker.yml").write_text(TALKER)
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, runbook_dir=books,
                               users=[("alice", PASSWORD, "operator"),
                                      ("victor", PASSWORD, "viewer")])


def open_page(browser, console, viewport: dict, path: str, user: str = "alice") -> Page:
    page = browser.new_context(viewport=viewport).new_page()
    page.add_init_script(KEEP_SOCKET)
    log_in(page, console.url, user)
    page.goto(f"{console.url}{path}")
    expect(page.locator("#job-status")).not_to_have_text("loading…", timeout=LONG)
    return page


# --- item 2: the running step's segment grows as time passes ------------------------------

@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_item_2_the_running_segment_grows_while_its_step_runs(browser, console, viewport):
    http = console.login()
    job_id = start_job(console, http, {"runbook": "two-speed", "servers": ["h01"]})
    page = open_page(browser, console, viewport, f"/jobs/{job_id}")

    def download_running():
        drawn = page.evaluate(SHARES)
        return len(drawn["shares"]) == 2 and drawn["running"] == [False, True] and drawn
    first = wait_until(download_running, 30, "the download step to run on h01")
    start = first["shares"][1]
    assert start < 0.6, first  # seen within a second or so of its start

    # No event comes while the download sleeps: only the page's own redraws move it.
    grown = wait_until(lambda: (drawn := download_running()) and
                       drawn["shares"][1] > start + 0.15 and drawn, 10,
                       "the running segment to grow")
    assert grown["shares"][0] < first["shares"][0]  # the finished step's share shrinks
    # Once the job ends the bar is the steps' durations: download about 4 times prepare.
    wait_until(lambda: job_of(console, http, job_id)["status"] == "succeeded", 30,
               f"job {job_id} to succeed")
    expect(page.locator('tr[data-host="h01"] .timeline-segment.status-ok')).to_have_count(2)
    final = page.evaluate(SHARES)["shares"]
    assert 0.7 < final[1] < 0.9, final


# --- item 13: a re-run offers only the servers still failing ------------------------------

def run_to_end(console, http, payload: dict, status: str) -> int:
    job_id = start_job(console, http, payload)
    wait_until(lambda: job_of(console, http, job_id)["status"] == status, 60,
               f"job {job_id} to end {status}")
    return job_id


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_item_13_a_server_fixed_since_is_named_and_not_re_run(browser, console, viewport,
                                                              tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    for name in ("h02", "h03"):
        (marks / f"broken-{name}").touch()
    http = console.login()
    mend = {"runbook": "mend", "params": {"dir": str(marks)}}
    first = run_to_end(console, http, {**mend, "servers": ["h01", "h02", "h03"]}, "failed")
    page = open_page(browser, console, viewport, f"/jobs/{first}")
    rerun = page.locator("#rerun-button")
    since = page.locator("#rerun-since")
    expect(rerun).to_have_text("Re-run failed servers")
    expect(since).to_be_hidden()

    # A later job of the same runbook and parameters fixes h03 while the page is open.
    (marks / "broken-h03").unlink()
    fixed = run_to_end(console, http, {**mend, "servers": ["h03"]}, "succeeded")
    page.evaluate("window.pageSocket.io.engine.close()")  # reconnects: a new subscribe ack
    expect(since).to_have_text(f"h03 succeeded since in job #{fixed}.", timeout=LONG)
    expect(since.get_by_role("link", name=f"job #{fixed}")).to_have_attribute(
        "href", f"/jobs/{fixed}")
    expect(since).to_be_in_viewport()
    expect(rerun).to_have_text("Re-run failed servers")

    rerun.click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text(f"on the 1 server of job #{first} that did not succeed "
                                   "(1 failed): h02.")
    expect(dialog).to_contain_text(f"so are those fixed since: h03 succeeded since in job "
                                   f"#{fixed}.")
    expect(page.locator("#confirm-accept")).to_have_text("Re-run 1 failed server")
    page.click("#confirm-accept")
    page.wait_for_url(re.compile(rf"/jobs/(?!{first}$)\d+$"))
    again = int(page.url.rsplit("/", 1)[1])
    assert [host["name"] for host in job_of(console, http, again)["hosts"]] == ["h02"]

    # The page made after it says the same, from its own data.
    page.goto(f"{console.url}/jobs/{first}")
    expect(since).to_have_text(f"h03 succeeded since in job #{fixed}.", timeout=LONG)


# --- item 12: Cancel and Abort say what each does -----------------------------------------

CANCEL_SAYS = "stops everything now, steps under way included"
ABORT_SAYS = ("Abort stops the rollout at this gate: the servers not started are skipped, "
              "those done keep their result. Cancel job stops everything now.")


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_item_12_cancel_and_abort_say_what_each_does_at_a_gate(browser, console, viewport):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02", "h03"])
    page = open_page(browser, console, viewport, f"/jobs/{job_id}")
    cancel = page.locator("#cancel-button")
    abort = page.locator("#abort-button")
    expect(page.locator("#gate-panel")).to_be_visible()
    expect(cancel).to_be_visible()
    expect(abort).to_be_visible()

    # Each says it beside the button, and to a screen reader as the button's description.
    expect(page.locator("#cancel-help")).to_have_text(CANCEL_SAYS)
    expect(page.locator("#cancel-help")).to_be_visible()
    expect(cancel).to_have_accessible_description(CANCEL_SAYS)
    expect(page.locator("#abort-help")).to_have_text(ABORT_SAYS)
    expect(page.locator("#abort-help")).to_be_visible()
    expect(abort).to_have_accessible_description(ABORT_SAYS)
    for button, line in ((cancel, "#cancel-help"), (abort, "#abort-help")):
        near = page.locator(line).bounding_box()
        box = button.bounding_box()
        assert abs(near["y"] - (box["y"] + box["height"])) < 80, (box, near)  # beside it

    # The dashboard's row: its Abort says what it does too.
    page.goto(f"{console.url}/")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row.locator("button.abort-button")).to_have_text("Abort: skip the rest",
                                                            timeout=LONG)

    # The job over, Cancel and its line go.
    page.goto(f"{console.url}/jobs/{job_id}")
    page.click("#cancel-button")
    page.click("#confirm-accept")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    expect(cancel).to_be_hidden()
    expect(page.locator("#cancel-help")).to_be_hidden()


# --- item 18: the failed servers first, right under the status ----------------------------

# Where the block is: under the head (the status line), before the job's details.
PLACE = """() => {
  const box = (id) => document.getElementById(id).getBoundingClientRect();
  const block = document.getElementById("failed-servers");
  const before = (a, b) => Boolean(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
  return { top: box("failed-servers").top, headBottom: document.querySelector(".job-head")
             .getBoundingClientRect().bottom, statusBottom: box("job-status").bottom,
           afterStatus: before(document.getElementById("job-status"), block),
           beforeDetails: before(block, document.querySelector(".job-meta")) &&
             before(block, document.querySelector(".progress-card")) };
}"""


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1440", "390"])
def test_item_18_failed_servers_come_first_under_the_status(browser, console, viewport):
    http = console.login()
    servers = [f"h0{n}" for n in range(1, 9)]
    job_id = run_to_end(console, http, {"runbook": "basic", "servers": servers, "params": {
        "message": "hi", "fail_on": "h06"}}, "failed")
    page = open_page(browser, console, viewport, f"/jobs/{job_id}")
    block = page.locator("#failed-servers")
    expect(block).to_be_visible()
    expect(page.locator("#failed-servers-title")).to_have_text("1 server failed")
    item = block.locator("li.failed-server")
    expect(item).to_have_count(1)
    expect(item).to_have_text(re.compile(r"^h06 .*exit.* 3"))

    place = page.evaluate(PLACE)
    assert place["afterStatus"] and place["beforeDetails"], place  # in reading order too
    assert place["statusBottom"] <= place["top"] < viewport["height"], place
    assert place["top"] - place["headBottom"] < 24, place  # right under the status line
    page.screenshot(path=str(SCREENSHOTS / f"issue32-failed-first-{viewport['width']}.png"))

    # Its link jumps to the failed server's row (a card on a phone), even one filtered out.
    page.select_option("#host-filter", "succeeded")
    expect(page.locator('tr[data-host="h06"]')).to_be_hidden()
    item.get_by_role("link", name="h06").click()
    row = page.locator('tr[data-host="h06"]')
    expect(row).to_be_visible()
    expect(row).to_be_in_viewport()
    assert page.url.endswith("#" + row.get_attribute("id"))


# --- item 15: job rows count gate decisions per person, cut the latest line at a word -----

def test_item_15_job_rows_say_promoted_twice_and_cut_the_line_at_a_word(browser, console):
    http = console.login()
    answer = http.post(f"{console.url}/api/jobs", timeout=30, json={
        "runbook": "basic", "params": {"message": "twice"}, "servers": ["h01", "h02", "h03"],
        "strategy": {"batches": [1, 1], "gate": "manual"}})
    assert answer.status_code == 201, answer.text
    twice = answer.json()["job_id"]
    for _ in range(2):
        wait_until(lambda: job_of(console, http, twice)["status"] == "paused", 60,
                   f"job {twice} to pause at a gate")
        assert http.post(f"{console.url}/api/jobs/{twice}/promote", timeout=30).ok
        wait_until(lambda: job_of(console, http, twice)["status"] != "paused", 60,
                   f"job {twice} to go on")
    wait_until(lambda: job_of(console, http, twice)["status"] == "succeeded", 60,
               f"job {twice} to succeed")

    page = open_dashboard(browser, console)
    gates = page.locator(f'tr[data-job-id="{twice}"] .job-gates')
    expect(gates).to_have_text("promoted twice by alice")

    talking = start_job(console, http, {"runbook": "talker", "servers": ["h01"]})
    latest = page.locator(f'tr[data-job-id="{talking}"] .job-latest')
    expect(latest).to_have_text(re.compile(r"…$"), timeout=LONG)
    shown = latest.text_content()
    kept = shown.removeprefix("[h01] ").removesuffix("…")
    assert LONG_LINE.startswith(kept) and LONG_LINE[len(kept)] == " ", shown  # at a word
    assert len(kept) < 120, shown
    expect(latest).to_have_attribute("title", f"[h01] {LONG_LINE}")


def open_dashboard(browser, console) -> Page:
    page = browser.new_context(viewport=VIEWPORTS[0]).new_page()
    log_in(page, console.url)
    return page
