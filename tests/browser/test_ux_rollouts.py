"""Issue #13 in the browser: a rollout's batches as segments, Promote and Abort at a
manual gate (job page and dashboard, each asking first; viewers see who can), who
promoted or aborted in the log, the history and the downloaded log, and a wait step's
probe output and countdown. Real console process, real OpenSSH servers, Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, write_inventory
from tests.support.console_world import (
    LONG,
    USERS,
    finished_job,
    job_of,
    log_in,
    paused_rollout,
    runbook_dir,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, runbook_dir=runbook_dir(tmp_path),
                               users=USERS + [("vera", PASSWORD, "viewer")])


def segment(page: Page, index: int):
    return page.locator(f'#batch-segments .batch-segment[data-batch="{index}"]')


def dialog(page: Page):
    return page.locator("#confirm-dialog")


def test_promote_on_the_job_page_asks_then_runs_the_next_batch_and_says_who(
        browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02", "h03"])
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")

    expect(page.locator("#job-status")).to_have_text("paused", timeout=LONG)
    expect(page).to_have_title(re.compile(rf"^Paused · Job #{job_id} "))
    expect(segment(page, 0)).to_contain_text("canary")
    expect(segment(page, 0)).to_have_attribute("data-status", "succeeded")
    expect(segment(page, 1)).to_contain_text("batch 2")
    expect(segment(page, 1)).to_have_attribute("data-status", "gate")
    expect(segment(page, 1)).to_contain_text("waiting at the gate")
    panel = page.locator("#gate-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("The canary succeeded (h01). Next: batch 2 (h02, h03).")
    expect(page.locator('#hosts tr[data-host="h02"] .host-step')).to_have_text(
        "waiting at the gate")

    # Dismissed: nothing happens.
    page.click("#promote-button")
    expect(page.locator("#confirm-title")).to_have_text(f"Promote job #{job_id}?")
    expect(dialog(page)).to_contain_text("Promote: batch 2 (h02, h03) starts.")
    page.click("#confirm-dismiss")
    expect(dialog(page)).to_be_hidden()
    assert job_of(console, http, job_id)["status"] == "paused"

    page.click("#promote-button")
    expect(page.locator("#confirm-accept")).to_have_text("Promote: start batch 2")
    page.click("#confirm-accept")

    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    expect(panel).to_be_hidden()
    expect(page.locator("#rollout-history")).to_contain_text(
        "promoted by alice: batch 2 started")
    expect(page.locator('.host-log[data-host="h02"] .log-note',
                        has_text="promoted by alice: batch 2 starts")).to_have_count(1)
    for index in (0, 1):
        expect(segment(page, index)).to_have_attribute("data-status", "succeeded")
    assert [host["status"] for host in finished_job(console, http, job_id)["hosts"]] == \
        ["succeeded"] * 3

    # A reload tells the same from the log.
    page.reload()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    expect(segment(page, 1)).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#rollout-history")).to_contain_text(
        "paused after the canary: waiting for an operator")
    expect(page.locator("#rollout-history")).to_contain_text("promoted by alice")
    expect(page).to_have_title(re.compile(rf"^Job #{job_id} "))

    # The downloaded log and the history say who promoted it.
    text = http.get(f"{console.url}/jobs/{job_id}/log.txt", timeout=30).text
    assert "[job] paused after batch 1: waiting at the gate" in text
    assert "[job] promoted by alice: batch 2 starts" in text
    page.goto(f"{console.url}/jobs")
    row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".job-gates")).to_have_text("promoted by alice")
    expect(row.locator(".batch-segment")).to_have_count(2)


def test_abort_on_the_dashboard_skips_the_rest_and_the_job_ends_cancelled(
        browser, console):
    http = console.login()
    names = ["h01", "h02", "h03", "h04"]
    job_id = paused_rollout(console, http, names)
    page = browser.new_page()
    log_in(page, console.url)
    row = page.locator(f'#recent-jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".job-status-cell")).to_have_text("paused", timeout=LONG)
    expect(row.locator('.batch-segment[data-batch="0"]')).to_have_attribute(
        "data-status", "succeeded", timeout=LONG)
    expect(row.locator('.batch-segment[data-batch="1"]')).to_have_attribute(
        "data-status", "gate")
    expect(row.locator(".job-gate-text")).to_have_text("paused after the canary")

    row.locator("button.abort-button").click()
    expect(page.locator("#confirm-title")).to_have_text(f"Abort job #{job_id} at the gate?")
    expect(dialog(page)).to_contain_text(
        "Abort: 3 servers will be skipped and the job ends cancelled. (h02, h03, h04)")
    expect(page.locator("#confirm-accept")).to_have_text("Abort: skip 3 servers")
    page.click("#confirm-accept")

    expect(row.locator(".job-status-cell")).to_have_text("cancelled", timeout=LONG)
    expect(row.locator(".job-gate")).to_have_count(0)
    expect(row.locator(".job-gates")).to_have_text("aborted at the gate by alice")
    job = finished_job(console, http, job_id)
    assert job["status"] == "cancelled"
    assert {host["name"]: host["status"] for host in job["hosts"]} == {
        "h01": "succeeded", "h02": "skipped", "h03": "skipped", "h04": "skipped"}

    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    expect(segment(page, 1)).to_have_attribute("data-status", "skipped")
    expect(page.locator("#rollout-history")).to_contain_text(
        "aborted at the gate by alice after the canary")
    expect(page.locator('#hosts tr[data-host="h03"] .host-reason')).to_have_text(
        "not started: aborted at the gate by alice")
    expect(page.locator("#promote-button")).to_be_hidden()
    text = http.get(f"{console.url}/jobs/{job_id}/log.txt", timeout=30).text
    assert "[job] aborted at the gate by alice after batch 1" in text


def test_the_dashboard_form_chooses_the_gate_between_batches(browser, console):
    http = console.login()
    page = browser.new_page()
    log_in(page, console.url)
    page.select_option("#runbook", "basic")
    page.fill("#param-message", "from the form")
    page.fill("#strategy-batches", "1")
    page.select_option("#strategy-gate", "soak")
    expect(page.locator("#strategy-soak")).to_be_visible()
    page.fill("#strategy-soak", "0")
    page.click("#preview-button")
    expect(page.locator("#form-error")).to_contain_text("soak", timeout=LONG)
    expect(page.locator("#strategy-gate")).to_have_attribute("aria-invalid", "true")

    page.select_option("#strategy-gate", "manual")
    expect(page.locator("#strategy-soak")).to_be_hidden()
    page.check("#target-servers")
    page.check("#server-h05")
    page.check("#server-h06")
    page.click("#run-button")
    page.wait_for_url(re.compile(r"/jobs/\d+$"), timeout=LONG)
    job_id = int(page.url.rsplit("/", 1)[1])

    expect(page.locator("#job-status")).to_have_text("paused", timeout=LONG)
    assert job_of(console, http, job_id)["strategy"]["gate"] == "manual"
    page.click("#promote-button")
    page.click("#confirm-accept")
    assert finished_job(console, http, job_id)["status"] == "succeeded"


def test_a_refused_promote_shows_the_servers_message(browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02"])
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("paused", timeout=LONG)
    page.click("#promote-button")
    expect(dialog(page)).to_be_visible()
    # Someone else promotes it meanwhile, over the API.
    bob = console.login("bob")
    assert bob.post(f"{console.url}/api/jobs/{job_id}/promote", timeout=30).status_code == 200
    page.click("#confirm-accept")
    expect(page.locator("#job-message")).to_have_text(re.compile(
        rf"^job #{job_id} is (not waiting at a gate \(it is \w+\)|already being promoted, "
        r"aborted or cancelled)$"), timeout=LONG)
    expect(page.locator("#job-message")).to_have_attribute("data-kind", "error")
    expect(page.locator("#rollout-history")).to_contain_text("promoted by bob", timeout=LONG)
    assert finished_job(console, http, job_id)["status"] == "succeeded"


def test_a_viewer_sees_no_buttons_but_who_can_promote(browser, console):
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02"])
    page = browser.new_page()
    log_in(page, console.url, "vera")
    row = page.locator(f'#recent-jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".job-gate")).to_contain_text("an operator can promote it or abort it")
    expect(row.locator("button")).to_have_count(0)

    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("paused", timeout=LONG)
    expect(page.locator("#gate-panel")).to_be_visible()
    expect(page.locator("#gate-viewer")).to_have_text(
        "An operator can promote it (start batch 2) or abort it (the servers not started "
        "are skipped).")
    expect(page.locator("#promote-button")).to_have_count(0)
    expect(page.locator("#abort-button")).to_have_count(0)
    assert job_of(console, http, job_id)["status"] == "paused"


def test_a_paused_job_with_its_buttons_fits_a_phone(browser, console):
    from tests.browser.test_ux_layout import PHONE, SCREENSHOTS, overflow

    http = console.login()
    job_id = paused_rollout(console, http, [f"h0{n}" for n in range(1, 9)])
    page = browser.new_context(viewport=PHONE).new_page()
    log_in(page, console.url)
    expect(page.locator(f'#recent-jobs tr[data-job-id="{job_id}"] .promote-button')
           ).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "paused-dashboard-390x844.png"), full_page=True)
    assert overflow(page)["scroll"] <= PHONE["width"], overflow(page)
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator("#promote-button")).to_be_visible(timeout=LONG)
    expect(segment(page, 1)).to_have_attribute("data-status", "gate")
    page.screenshot(path=str(SCREENSHOTS / "paused-job-390x844.png"), full_page=True)
    assert overflow(page)["scroll"] <= PHONE["width"], overflow(page)


def test_a_wait_step_shows_its_probe_output_and_a_countdown_then_how_it_ended(
        browser, console, tmp_path):
    http = console.login()
    flag = tmp_path / "go"
    answer = http.post(f"{console.url}/api/jobs", timeout=30, json={
        "runbook": "wait-for-file", "params": {"path": str(flag)}, "servers": ["h01"]})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")

    panel = page.locator('.wait-panel[data-host="h01"]')
    expect(panel.locator(".wait-output")).to_have_text(re.compile(r"^players online\s+not yet$"),
                                                       timeout=LONG)
    expect(panel).to_have_attribute("data-state", "waiting")
    countdown = panel.locator(".wait-countdown")
    expect(countdown).to_have_text(re.compile(r"^(\d min \d\d s|\d+ s) left$"))
    first = countdown.text_content()
    expect(countdown).not_to_have_text(first, timeout=5000)  # it ticks
    expect(page.locator('#hosts tr[data-host="h01"] .host-step')).to_have_text(
        re.compile(r"^wait for file: waiting for \^found it\$ · .+ left$"))
    # Several probes, one log line for them all.
    expect(panel.locator(".wait-state")).to_contain_text(re.compile(r"probe ([3-9]|\d\d+)"),
                                                         timeout=LONG)
    probe_lines = page.locator('.host-log[data-host="h01"] .log-wait')
    expect(probe_lines).to_have_count(1)
    expect(probe_lines).to_contain_text("“not yet” (exit 0) · no match yet")

    flag.touch()
    expect(panel).to_have_attribute("data-state", "ok", timeout=LONG)
    expect(panel.locator(".wait-end")).to_have_text(re.compile(r"^matched after \d+ probes$"))
    expect(panel.locator(".wait-output")).to_have_text("found it")
    expect(probe_lines).to_have_count(1)
    expect(probe_lines).to_contain_text(re.compile(r"“found it” \(exit 0\) · matched after"))
    header = page.locator('.host-log[data-host="h01"] .step-header[data-step="wait for file"]')
    expect(header).to_contain_text(re.compile(r"ok · .* — matched \^found it\$ after \d+ probes"))
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
    expect(page.locator('.host-log[data-host="h01"] .line',
                        has_text="done waiting on h01")).to_have_count(1)
    expect(panel.locator(".wait-end")).to_have_text(re.compile(r"^matched after \d+ probes$"))

    text = http.get(f"{console.url}/jobs/{job_id}/log.txt", timeout=30).text
    probes = [line for line in text.splitlines() if line.startswith("[h01] probe ")]
    assert len(probes) >= 3, probes
    assert all(", no match, " in line and line.endswith(": not yet")
               for line in probes[:-1]), probes
    assert ", matched, " in probes[-1] and probes[-1].endswith(": found it"), probes
    assert "[h01] step wait for file started: waiting for ^found it$ every 0.5 s" in text


def soak_rollout(console, http, tmp_path, seconds: float) -> int:
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    answer = http.post(f"{console.url}/api/jobs", timeout=30, json={
        "runbook": "soak-health", "params": {"dir": str(marks)}, "servers": ["h01", "h02"],
        "strategy": {"batches": [1], "gate": {"soak": seconds}}})
    assert answer.status_code == 201, answer.text
    return answer.json()["job_id"]


def test_a_soak_counts_down_to_its_health_checks(browser, console, tmp_path):
    http = console.login()
    job_id = soak_rollout(console, http, tmp_path, 600)
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")

    now = page.locator("#rollout-now")
    expect(now).to_have_text(re.compile(
        r"^Soaking the canary: health checks again in (10 min 00 s|9 min \d\d s)$"),
        timeout=LONG)
    expect(segment(page, 0)).to_have_attribute("data-status", "soaking")
    expect(segment(page, 1)).to_have_attribute("data-status", "pending")
    left = now.text_content()
    expect(now).not_to_have_text(left, timeout=5000)  # it ticks
    expect(page.locator('.host-log[data-host="h01"] .log-note',
                        has_text="soaking the canary: health checks again in 10 min 00 s")
           ).to_have_count(1)

    assert http.post(f"{console.url}/api/jobs/{job_id}/cancel", timeout=30).status_code == 200
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    expect(now).to_be_hidden()
    expect(segment(page, 0)).to_have_attribute("data-status", "succeeded")


def test_a_failed_soak_says_which_server_and_stops_the_rollout(browser, console, tmp_path):
    http = console.login()
    job_id = soak_rollout(console, http, tmp_path, 1)
    assert finished_job(console, http, job_id)["status"] == "failed"
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")

    expect(page.locator("#job-status")).to_have_text("failed", timeout=LONG)
    history = page.locator("#rollout-history")
    expect(history).to_contain_text("soaking the canary for 1 s, then its health checks again")
    expect(history).to_contain_text(
        "the canary failed its health check after a 1 s soak (h01)")
    expect(segment(page, 0)).to_have_attribute("data-status", "failed")
    expect(segment(page, 0)).to_contain_text("failed its soak")
    expect(segment(page, 1)).to_have_attribute("data-status", "skipped")
    h01 = page.locator('.host-log[data-host="h01"]')
    expect(h01.locator('.step-header[data-phase="health"]')).to_contain_text(
        "soak check 2 health check")
    expect(h01.locator('.step-header[data-phase="health"]')).to_have_attribute(
        "data-status", "failed")
    expect(h01.locator(".log-note", has_text="soak failed: the canary failed its health "
                       "check after a 1 s soak (h01)")).to_have_count(1)
    text = http.get(f"{console.url}/jobs/{job_id}/log.txt", timeout=30).text
    assert "[h01] step health check started (soak health check)" in text
    assert "[job] the canary failed its health check after a 1 s soak (h01)" in text


def test_a_gate_event_folded_in_twice_is_logged_once(browser, console):
    """The dashboard re-applies the events that came while a row's GET was in flight,
    after folding them in on arrival: the abort was once shown twice ("aborted at the
    gate by alice; aborted at the gate by alice")."""
    page = browser.new_page()
    log_in(page, console.url)
    kinds = page.evaluate("""() => {
        const rollout = new window.PatchbayRollout.Rollout();
        rollout.setBatches([["h01"], ["h02", "h03"]]);
        const events = [
            {seq: 7, type: "job_paused", data: {batch: 0, next_batch: 1}},
            {seq: 9, type: "job_aborted", data: {batch: 0, by: "alice"}},
        ];
        for (const event of [...events, ...events]) rollout.apply(event);
        return rollout.log.map((item) => item.kind + " by " + (item.by || "-"));
    }""")
    assert kinds == ["paused by -", "aborted by alice"]


def test_a_row_s_answer_older_than_its_live_events_does_not_undo_them(browser, console):
    """A dashboard row asks GET /api/jobs/<id> (here: on Abort, to word its question);
    the job moves on while the answer is on its way. The events that came meanwhile are
    newer than the answer and must win: the row once stayed "paused" after the job had
    ended cancelled."""
    http = console.login()
    job_id = paused_rollout(console, http, ["h01", "h02", "h03"])
    page = browser.new_page()
    log_in(page, console.url)
    row = page.locator(f'#recent-jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".job-status-cell")).to_have_text("paused", timeout=LONG)
    held: list[str] = []
    failures: list[BaseException] = []

    def answer_late(route) -> None:
        if held:  # only the first answer is held back
            route.continue_()
            return
        try:
            stale = route.fetch()  # the job as it is now: paused
            held.append(stale.json()["job"]["status"])
            aborted = http.post(f"{console.url}/api/jobs/{job_id}/abort", timeout=30)
            assert aborted.status_code == 200, aborted.text
            finished_job(console, http, job_id)
            wait_until(lambda: row.locator(".job-status-cell").inner_text() == "cancelled",
                       what="the live events of the abort to reach the row")
            row.locator(".job-rollout").evaluate(
                "box => { box.firstElementChild.dataset.before = 1; }")
        except BaseException as error:  # a route handler's errors are not raised here
            failures.append(error)
            route.abort()
            return
        route.fulfill(response=stale)

    page.route(f"**/api/jobs/{job_id}", answer_late)
    row.locator("button.abort-button").click()
    # The row redraws when it has taken the answer in (no event comes after job_finished)
    expect(row.locator(".job-rollout [data-before]")).to_have_count(0, timeout=LONG)
    assert not failures, failures

    expect(row.locator(".job-status-cell")).to_have_text("cancelled", timeout=LONG)
    expect(row.locator(".job-progress")).to_have_text("1 / 3 succeeded · 2 skipped")
    expect(page.locator("#confirm-title")).to_be_hidden()
    assert held == ["paused"]
