"""Issue #25, a console that never tells a comforting lie: actions that show they were
heard (Promote, Abort, Cancel say what is under way on their own button, stay off until
the event that settles them, send one decision whatever the clicks, and say why in place
when refused), and a failed server's section that leads with its failure, not with the
green "matched" of a wait step before it. Real console process, real OpenSSH servers,
Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import write_inventory
from tests.support.console_world import (
    LONG,
    USERS,
    job_of,
    log_in,
    paused_rollout,
    runbook_dir,
    start_job,
    stored_events,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

WAIT_THEN_FAIL = """\
name: wait-then-fail
description: A wait step that matches at once, then a step that fails.
steps:
  - name: wait for ready
    wait:
      command: echo ready
      until: '^ready$'
      every: 0.2
      timeout: 60
      on_timeout: fail
  - name: break
    run: |
      echo "broken on "{{ host.name }} >&2
      exit 3
"""

# Holds the job page's incoming job:events messages (the socket.io client's own
# dispatch, patched in the page), so a test sees what the page shows while the server has
# moved on and the event that says so has not arrived yet; release() hands them over.
HOLD_EVENTS = """() => {
  const proto = io.Socket.prototype;
  const original = proto.onevent;
  const held = [];
  window.heldEvents = { holding: true, count: () => held.length, release() {
    this.holding = false;
    proto.onevent = original;
    for (const [socket, packet] of held.splice(0)) original.call(socket, packet);
  } };
  proto.onevent = function (packet) {
    if (window.heldEvents.holding && packet.data && packet.data[0] === "job:events") {
      held.push([this, packet]);
      return;
    }
    return original.call(this, packet);
  };
}"""

# Holds the answers (acks) to the page's socket requests, the same way.
HOLD_ACKS = """() => {
  const proto = io.Socket.prototype;
  const original = proto.onack;
  const held = [];
  window.heldAcks = { count: () => held.length, release() {
    proto.onack = original;
    for (const [socket, packet] of held.splice(0)) original.call(socket, packet);
  } };
  proto.onack = function (packet) { held.push([this, packet]); };
}"""

# Every (text, disabled) a job row's Promote button shows, in order (rows are redrawn).
WATCH_ROW = """(id) => {
  const row = document.querySelector(`#recent-jobs tr[data-job-id="${id}"]`);
  window.seen = [];
  const look = () => {
    const button = row.querySelector(".promote-button");
    const state = button ? button.textContent + "|" + button.disabled : "none";
    if (window.seen[window.seen.length - 1] !== state) window.seen.push(state);
  };
  look();
  new MutationObserver(look).observe(row, { subtree: true, childList: true,
    characterData: true, attributes: true });
}"""


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    books = runbook_dir(tmp_path)
    (books / "wait-then-fail.yml").write_text(WAIT_THEN_FAIL)
    return live_server_factory(inventory=inventory, runbook_dir=books, users=USERS)


def accept_then_click_twice(page: Page, selector: str) -> None:
    """Accept the open dialog, then click ``selector`` twice in the same task: both
    clicks land before the page can turn the button off."""
    page.evaluate("""(selector) => {
      document.getElementById("confirm-accept").click();
      const button = document.querySelector(selector);
      button.click();
      button.click();
    }""", selector)


def count_sent(page: Page, event: str) -> list[int]:
    """Count the socket requests named `event` the page sends, over a websocket or
    long-polling: a list holding one number, kept up to date."""
    sent = [0]
    needle = f'"{event}"'

    def frame(payload) -> None:
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        sent[0] += text.count(needle)

    page.on("websocket", lambda ws: ws.on("framesent", frame))
    page.on("request", lambda request: frame(request.post_data or "")
            if request.method == "POST" and "/socket.io/" in request.url else None)
    return sent


def open_paused(page: Page, console, job_id: int) -> None:
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("paused", timeout=LONG)
    expect(page.locator("#promote-button")).to_have_text("Promote: start batch 2")


def test_a_double_click_on_promote_sends_one_decision_and_it_says_promoting_until_resumed(
        browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02"])
    page = browser.new_page()
    sent = count_sent(page, "job:promote")
    open_paused(page, console, job_id)
    promote = page.locator("#promote-button")
    page.evaluate(HOLD_EVENTS)

    promote.click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    # Accept, then two more clicks at once: they land before the button is off.
    accept_then_click_twice(page, "#promote-button")

    expect(promote).to_have_text("promoting…")
    expect(promote).to_be_disabled()
    expect(page.locator("#abort-button")).to_be_disabled()
    # The server took it and the job moved on; the page has not heard job_resumed yet.
    wait_until(lambda: job_of(console, http, job_id)["status"] != "paused", 60,
               f"job {job_id} to be promoted")
    wait_until(lambda: page.evaluate("window.heldEvents.count()") > 0, 30,
               "the job_resumed message to reach the page")
    expect(promote).to_have_text("promoting…")
    expect(promote).to_be_disabled()
    expect(page.locator("#confirm-dialog")).to_be_hidden()  # no second question either
    assert page.locator("#promote-button-error").count() == 0

    page.evaluate("window.heldEvents.release()")
    expect(page.locator("#gate-panel")).to_be_hidden(timeout=LONG)
    expect(page.locator("#rollout-history")).to_contain_text("promoted by alice")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    expect(promote).to_have_text("Promote: start batch 2")  # its own label again
    events = stored_events(console, http, job_id)
    assert [event["type"] for event in events].count("job_resumed") == 1
    assert sent[0] == 1, f"{sent[0]} job:promote requests sent"


def test_a_double_click_on_a_dashboard_row_s_promote_sends_one_decision(browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02"])
    page = browser.new_page()
    sent = count_sent(page, "job:promote")
    log_in(page, console.url)
    row = page.locator(f'#recent-jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".promote-button")).to_have_text("Promote: start batch 2",
                                                        timeout=LONG)
    page.evaluate(WATCH_ROW, job_id)

    row.locator(".promote-button").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    accept_then_click_twice(page, f'#recent-jobs tr[data-job-id="{job_id}"] .promote-button')

    expect(row.locator(".job-gates")).to_have_text("promoted by alice", timeout=LONG)
    expect(row.locator(".job-status-cell")).to_have_text("succeeded", timeout=LONG)
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    seen = page.evaluate("window.seen")
    assert "promoting…|true" in seen, seen
    # From the accepted dialog on: "promoting…", off, until the row's gate went.
    after = seen[seen.index("promoting…|true"):]
    assert set(after) <= {"promoting…|true", "none"} and after[-1] == "none", seen
    assert sent[0] == 1, f"{sent[0]} job:promote requests sent"


def test_re_run_says_starting_until_the_new_job_s_page(browser, console):
    http = console.login()
    job_id = start_job(console, http, {"runbook": "basic", "servers": ["h02", "h03"],
                                       "params": {"message": "hi", "fail_on": "h02"}})
    wait_until(lambda: job_of(console, http, job_id)["status"] == "failed", 60,
               f"job {job_id} to fail")
    page = browser.new_page()
    sent = count_sent(page, "job:rerun")
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")
    rerun = page.locator("#rerun-button")
    expect(rerun).to_have_text("Re-run failed servers", timeout=LONG)
    page.evaluate(HOLD_ACKS)

    rerun.click()
    accept_then_click_twice(page, "#rerun-button")

    expect(rerun).to_have_text("starting re-run…")
    expect(rerun).to_be_disabled()
    wait_until(lambda: page.evaluate("window.heldAcks.count()") > 0, 30,
               "the re-run's answer to reach the page")
    expect(rerun).to_have_text("starting re-run…")  # the answer is held: still under way
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    page.evaluate("window.heldAcks.release()")
    page.wait_for_url(re.compile(rf"/jobs/(?!{job_id}$)\d+$"), timeout=LONG)
    assert sent[0] == 1, f"{sent[0]} job:rerun requests sent"
    jobs = http.get(f"{console.url}/api/jobs", timeout=30).json()["jobs"]
    assert [job["rerun_of"] for job in jobs if job.get("rerun_of")] == [job_id], jobs


def test_a_click_on_cancel_as_promote_is_accepted_loses_no_decision(browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02"])
    page = browser.new_page()
    open_paused(page, console, job_id)
    promote = page.locator("#promote-button")
    page.evaluate(HOLD_EVENTS)

    promote.click()
    # Cancel lands while the promote's answer from the dialog is still on its way.
    page.evaluate("""() => {
      document.getElementById("confirm-accept").click();
      document.getElementById("cancel-button").click();
    }""")

    expect(promote).to_have_text("promoting…")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    wait_until(lambda: job_of(console, http, job_id)["status"] != "paused", 60,
               f"job {job_id} to be promoted")
    # Cancel is free while the decision at the gate is under way: it asks as ever.
    page.click("#cancel-button")
    expect(page.locator("#confirm-title")).to_have_text(f"Cancel job #{job_id}?")
    page.click("#confirm-dismiss")
    page.evaluate("window.heldEvents.release()")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    expect(page.locator("#gate-panel")).to_be_hidden()


def test_a_refused_promote_says_why_under_the_button_and_gives_its_label_back(
        browser, console):
    from sqlalchemy import create_engine, text

    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02"])
    page = browser.new_page()
    open_paused(page, console, job_id)
    # Alice loses the operator role while her page is open.
    engine = create_engine(console.env["DATABASE_URL"])
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE users SET role = 'viewer' "
                                    "WHERE username = 'alice'"))
    finally:
        engine.dispose()

    page.click("#promote-button")
    page.click("#confirm-accept")

    refusal = page.locator("#promote-button-error")
    expect(refusal).to_be_visible(timeout=LONG)
    expect(refusal).to_have_text(re.compile(r"^viewers can't .*promote.* \(that takes the "
                                            r"operator role\)$"))
    promote = page.locator("#promote-button")
    expect(promote).to_have_text("Promote: start batch 2")
    expect(promote).to_be_enabled()
    expect(promote).to_have_attribute("aria-describedby", "promote-button-error")
    expect(page.locator("#gate-panel")).to_be_visible()
    assert job_of(console, http, job_id)["status"] == "paused"
    # Tried again, the old reason goes while the new answer is on its way.
    page.click("#promote-button")
    page.click("#confirm-accept")
    expect(refusal).to_have_text(re.compile("operator role"), timeout=LONG)
    assert job_of(console, http, job_id)["status"] == "paused"


def test_abort_says_aborting_until_the_page_hears_the_job_was_aborted(browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02", "h03"])
    page = browser.new_page()
    open_paused(page, console, job_id)
    abort = page.locator("#abort-button")
    page.evaluate(HOLD_EVENTS)

    abort.click()
    page.click("#confirm-accept")

    expect(abort).to_have_text("aborting…")
    expect(abort).to_be_disabled()
    expect(page.locator("#promote-button")).to_be_disabled()
    wait_until(lambda: job_of(console, http, job_id)["status"] == "cancelled", 60,
               f"job {job_id} to end cancelled")
    wait_until(lambda: page.evaluate("window.heldEvents.count()") > 0, 30,
               "the job_aborted message to reach the page")
    expect(abort).to_have_text("aborting…")  # not heard yet
    expect(page.locator("#gate-panel")).to_be_visible()

    page.evaluate("window.heldEvents.release()")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    expect(page.locator("#gate-panel")).to_be_hidden()
    expect(abort).to_have_text("Abort")
    expect(page.locator("#rollout-history")).to_contain_text("aborted at the gate by alice")


def test_cancel_says_cancelling_until_the_job_has_ended(browser, console, tmp_path):
    http = console.login()
    release = tmp_path / "release"
    job_id = start_job(console, http, {
        "command": f"echo holding; until [ -e {release} ]; do sleep 0.05; done",
        "servers": ["h03"]})
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator(".host-log .line", has_text="holding")).to_be_attached(timeout=LONG)
    cancel = page.locator("#cancel-button")
    page.evaluate(HOLD_EVENTS)

    cancel.click()
    page.click("#confirm-accept")

    expect(cancel).to_have_text("cancelling…")
    expect(cancel).to_be_disabled()
    wait_until(lambda: job_of(console, http, job_id)["status"] == "cancelled", 60,
               f"job {job_id} to end cancelled")
    wait_until(lambda: page.evaluate("window.heldEvents.count()") > 0, 30,
               "the job's last events to reach the page")
    expect(cancel).to_have_text("cancelling…")  # the page has not heard the end yet
    expect(cancel).to_be_disabled()
    expect(page.locator("#job-status")).to_have_text("running")

    page.evaluate("window.heldEvents.release()")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    expect(cancel).to_be_hidden()
    expect(cancel).to_have_text("Cancel job")


def test_a_failed_server_leads_with_its_failure_and_an_earlier_wait_is_past(
        browser, console):
    http = console.login()
    job_id = start_job(console, http, {"runbook": "wait-then-fail", "servers": ["h04"]})
    wait_until(lambda: job_of(console, http, job_id)["status"] == "failed", 60,
               f"job {job_id} to fail")
    page = browser.new_page()
    log_in(page, console.url)

    page.goto(f"{console.url}/jobs/{job_id}")

    section = page.locator('.log-section[data-host="h04"]')
    failure = section.locator(".log-failure")
    expect(failure).to_have_text("Failed: step 'break' exited with code 3", timeout=LONG)
    panel = section.locator(".wait-panel")
    expect(panel).to_have_attribute("data-state", "ok")
    expect(panel).to_have_attribute("data-past", "true")
    expect(panel.locator(".wait-end")).to_have_text(re.compile(r"^matched"))
    expect(panel.locator(".wait-past")).to_have_text(" · earlier; the server failed after it")
    expect(panel.locator(".wait-output")).to_be_hidden()
    # The failure comes first in the section, and the past wait is not painted green.
    order = page.evaluate("""() => {
      const section = document.querySelector('.log-section[data-host="h04"]');
      const failure = section.querySelector(".log-failure");
      const panel = section.querySelector(".wait-panel");
      const first = Array.from(section.children).find((child) => !child.hidden &&
        child !== section.querySelector(".log-title"));
      return { failureFirst: first === failure,
               before: Boolean(failure.compareDocumentPosition(panel) &
                               Node.DOCUMENT_POSITION_FOLLOWING),
               background: getComputedStyle(panel).backgroundColor,
               failureBackground: getComputedStyle(failure).backgroundColor };
    }""")
    assert order["failureFirst"] and order["before"], order
    assert order["background"] == "rgba(0, 0, 0, 0)", order
    assert order["failureBackground"] != "rgba(0, 0, 0, 0)", order


def test_a_wait_that_ended_a_succeeded_server_is_not_past(browser, console, tmp_path):
    flag = tmp_path / "go"
    flag.touch()
    http = console.login()
    job_id = start_job(console, http, {"runbook": "wait-for-file",
                                       "params": {"path": str(flag)}, "servers": ["h05"]})
    wait_until(lambda: job_of(console, http, job_id)["status"] == "succeeded", 60,
               f"job {job_id} to succeed")
    page = browser.new_page()
    log_in(page, console.url)

    page.goto(f"{console.url}/jobs/{job_id}")

    panel = page.locator('.wait-panel[data-host="h05"]')
    expect(panel).to_have_attribute("data-state", "ok", timeout=LONG)
    expect(panel).to_have_attribute("data-past", "false")
    expect(panel.locator(".wait-output")).to_have_text("found it")
    expect(page.locator('.log-section[data-host="h05"] .log-failure')).to_be_hidden()

