"""Issue #15, items 1-5: the console never shows a wrong or misleading state.

A version is shown as known only when the server reported it, and as unverified after
a job that may have changed the build ended without a report (1); a finished job's
unfinished steps and servers take its final state, also after a console restart (2);
a stopped rollout shows its failed and skipped servers apart, in the form's words (3);
a server rolled back after a failure says to which version (4); a cancel names the
signal that stopped a step, really stops a step that ignores TERM, keeps the step
wrapper's own messages out of the output, and its "cancelling" note goes once the job
has ended (5). Real console processes, real sshd servers, Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import write_inventory
from tests.support.console_world import (
    LONG,
    USERS,
    finished_job,
    job_of,
    log_in,
    runbook_dir,
    start_job,
    stored_events,
)
from tests.support.remote import unique_seconds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
STUBBORN = unique_seconds(20)  # found on the servers by its command line

# A build switch under vars.root/ux: deploy records the build it replaces, then switches
# (or fails where FAIL_DEPLOY is); health check reports the build while HOLD_HEALTH is
# not there; on failure the recorded build comes back and is reported.
GAME_UPDATE = """\
name: game-update
description: Switches the build in vars.root/ux and reports it; rolls back on failure.
params:
  version:
    pattern: '^[0-9]+(\\.[0-9]+){2}$'
steps:
  - name: deploy
    run: |
      mkdir -p {{ vars.root }}/ux
      cd {{ vars.root }}/ux
      if [ -f current ]; then cp current previous; fi
      if [ -e FAIL_DEPLOY ]; then echo "deploy failed: FAIL_DEPLOY is there" >&2; exit 3; fi
      echo {{ params.version }} > current
      echo "current -> "{{ params.version }}
  - name: health check
    capture: version
    run: |
      cd {{ vars.root }}/ux
      while [ -e HOLD_HEALTH ]; do sleep 0.05; done
      cat current
on_failure:
  - name: rollback
    capture: version
    run: |
      cd {{ vars.root }}/ux
      if [ -f previous ]; then cp previous current; fi
      echo "rolled back"
      cat current
"""

# Holds its health check while vars.root/ux-hold is there; its secret parameter is
# sealed with the job, so a console with another SECRET_KEY cannot resume it.
HELD = """\
name: held
description: Holds its health check while a file is there; takes a secret.
params:
  token:
    secret: true
    pattern: '^[a-z]{4,20}$'
steps:
  - name: prepare
    run: echo preparing
  - name: health check
    capture: version
    run: |
      echo "using "{{ params.token }}
      while [ -e {{ vars.root }}/ux-hold ]; do sleep 0.05; done
      echo 9.9.9
"""


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    books = runbook_dir(tmp_path)
    (books / "game-update.yml").write_text(GAME_UPDATE)
    (books / "held.yml").write_text(HELD)
    for host in sshd_fleet.hosts:  # the fleet outlives a test: start from no build
        subprocess.run(["rm", "-rf", str(host.root / "ux"), str(host.root / "ux-hold")],
                       check=True)
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, runbook_dir=books, users=USERS)


def root_of(sshd_fleet, name: str) -> Path:
    return next(host.root for host in sshd_fleet.hosts if host.name == name)




def servers(console, http) -> dict[str, dict]:
    rows = http.get(f"{console.url}/api/servers", timeout=10).json()["servers"]
    return {row["name"]: row for row in rows}


def step_started(console, http, job_id: int, host: str, step: str) -> bool:
    return any(e["type"] == "step_started" and e["host"] == host and e["data"]["step"] == step
               for e in stored_events(console, http, job_id))


def open_job_page(page: Page, console, http, job_id: int) -> None:
    """The job page, fresh, with every stored event applied and every row drawn."""
    page.goto(f"{console.url}/jobs/{job_id}")
    last = stored_events(console, http, job_id)[-1]["seq"]
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(last),
                                                    timeout=LONG)
    expect(page.locator("body")).to_have_attribute("data-pending-rows", "0")


def press_cancel(page: Page) -> None:
    """Cancel from the job page, confirming when the page asks first."""
    page.click("#cancel-button")
    accept = page.locator("#confirm-accept")
    wait_until(lambda: accept.is_visible() or page.locator("#job-message").text_content(),
               what="the cancel asked or sent")
    if accept.is_visible():
        accept.click()


def test_item_1_a_cancelled_update_shows_the_version_as_unverified(browser, console,
                                                                   sshd_fleet):
    http = console.login()
    build = root_of(sshd_fleet, "h01") / "ux"
    first = finished_job(console, http, start_job(console, http, {
        "runbook": "game-update", "params": {"version": "1.4.3"}, "servers": ["h01"]}))
    verified = servers(console, http)["h01"]
    build.joinpath("HOLD_HEALTH").touch()
    try:
        second = start_job(console, http, {"runbook": "game-update",
                                       "params": {"version": "1.4.4"}, "servers": ["h01"]})
        wait_until(lambda: step_started(console, http, second, "h01", "health check"),
                   what="the health check holding, after the deploy switched the build")
        http.post(f"{console.url}/api/jobs/{second}/cancel", timeout=10)
        cancelled = finished_job(console, http, second)
    finally:
        build.joinpath("HOLD_HEALTH").unlink()
    after = servers(console, http)["h01"]
    page = browser.new_page()
    log_in(page, console.url)
    picker = page.locator('#server-list li[data-server="h01"] .server-version')
    page.goto(f"{console.url}/servers")
    cell = page.locator('#servers tr[data-server="h01"] .server-version')
    expect(cell).to_contain_text("1.4.3 (unverified)")
    tooltip = cell.locator(".version-unverified").get_attribute("title")
    page.goto(f"{console.url}/")
    expect(picker).to_contain_text("(unverified)")

    assert first["status"] == "succeeded" and cancelled["status"] == "cancelled"
    assert build.joinpath("current").read_text().strip() == "1.4.4"  # what it runs now
    assert (verified["version"], verified["version_state"], verified["version_job_id"]) == \
        ("1.4.3", "verified", first["id"])
    assert (after["version"], after["version_state"], after["version_job_id"]) == \
        ("1.4.3", "unverified", second)
    assert f"job #{second}" in tooltip and "last version it reported" in tooltip


def test_item_2_an_interrupted_job_shows_no_step_or_server_as_running(browser, console,
                                                                      sshd_fleet):
    http = console.login()
    finished_job(console, http, start_job(console, http, {
        "runbook": "game-update", "params": {"version": "1.4.3"}, "servers": ["h02"]}))
    holds = [root_of(sshd_fleet, name) / "ux-hold" for name in ("h02", "h03")]
    for hold in holds:
        hold.touch()
    try:
        job_id = start_job(console, http, {"runbook": "held", "params": {"token": "sesame"},
                                       "servers": ["h02", "h03", "h04"],
                                       "strategy": {"parallel": 2}})
        wait_until(lambda: all(step_started(console, http, job_id, name, "health check")
                               for name in ("h02", "h03")), what="both held in their step")
        console.kill9()
        # Restarted with another SECRET_KEY, the console cannot open what the job sealed:
        # it cannot resume the job and marks it interrupted.
        console.env["PATCHBAY_SECRET_KEY"] = "another-secret-key"
        console.start()
        http = console.login()
        job = finished_job(console, http, job_id)
    finally:
        for hold in holds:
            hold.unlink()
    page = browser.new_page()
    log_in(page, console.url)
    open_job_page(page, console, http, job_id)
    header = page.locator('.host-log[data-host="h02"] .step-header[data-step="health check"]')

    expect(page.locator("#job-status")).to_have_text("interrupted")
    expect(header).to_have_attribute("data-status", "interrupted")
    expect(header.locator(".step-result")).to_have_text("interrupted")
    expect(page.locator('.step-header[data-status="running"]')).to_have_count(0)
    expect(page.locator(".step-chip-live.status-running")).to_have_count(0)
    expect(page.locator(".timeline-segment.status-running")).to_have_count(0)
    expect(page.locator('.step-chip-live.status-interrupted')).to_have_count(2)
    for name in ("h02", "h03", "h04"):
        expect(page.locator(f'#hosts tr[data-host="{name}"]')).to_have_attribute(
            "data-status", "interrupted")
    assert job["status"] == "interrupted"
    assert {host["status"] for host in job["hosts"]} == {"interrupted"}
    h02 = servers(console, http)["h02"]  # its build may have changed under the step
    assert (h02["version"], h02["version_state"], h02["version_job_id"]) == \
        ("1.4.3", "unverified", job_id)


def test_item_3_a_stopped_rollout_shows_failed_and_skipped_apart_in_the_forms_words(
        browser, console):
    http = console.login()
    job_id = start_job(console, http, {"runbook": "flaky", "params": {"fail_on": "h01"},
                                   "servers": [f"h0{i}" for i in range(1, 9)],
                                   "strategy": {"parallel": 1, "max_failures": 1}})
    job = finished_job(console, http, job_id)
    page = browser.new_page()
    log_in(page, console.url)
    open_job_page(page, console, http, job_id)

    expect(page.locator("#progress-text")).to_have_text("0 / 8 succeeded · 1 failed · 7 skipped")
    expect(page.locator("#job-summary")).to_contain_text("Reason: stopped after 1 failure")
    expect(page.locator("#job-summary")).not_to_contain_text("max_failures")
    expect(page.locator('#hosts tr[data-host="h05"] .host-reason')).to_have_text(
        "not started: stopped after 1 failure")
    page.goto(f"{console.url}/")
    expect(page.locator(f'tr[data-job-id="{job_id}"] .job-progress')).to_have_text(
        "0 / 8 succeeded · 1 failed · 7 skipped")
    assert stored_events(console, http, job_id)[-1]["data"]["reason"] == \
        "stopped after 1 failure"
    assert [host["status"] for host in job["hosts"]] == ["failed"] + ["skipped"] * 7


def test_item_4_a_rolled_back_server_shows_the_version_it_rolled_back_to(browser, console,
                                                                         sshd_fleet):
    http = console.login()
    build = root_of(sshd_fleet, "h05") / "ux"
    finished_job(console, http, start_job(console, http, {
        "runbook": "game-update", "params": {"version": "1.4.2"}, "servers": ["h05", "h06"]}))
    build.joinpath("FAIL_DEPLOY").touch()
    try:
        job_id = start_job(console, http, {"runbook": "game-update",
                                       "params": {"version": "1.4.3"},
                                       "servers": ["h05", "h06"]})
        job = finished_job(console, http, job_id)
    finally:
        build.joinpath("FAIL_DEPLOY").unlink()
    page = browser.new_page()
    log_in(page, console.url)
    open_job_page(page, console, http, job_id)
    row = page.locator('#hosts tr[data-host="h05"]')

    expect(row.locator(".host-version")).to_have_text("rolled back to 1.4.2 ✓")
    expect(row.locator(".host-reason")).to_have_text(
        "step 'deploy' exited with code 3; rolled back to 1.4.2")
    expect(page.locator('#hosts tr[data-host="h06"] .host-version')).to_have_text("1.4.3")
    done = next(e["data"] for e in stored_events(console, http, job_id)
                if e["type"] == "host_finished" and e["host"] == "h05")
    assert (done["status"], done["on_failure"], done["facts"]) == \
        ("failed", "succeeded", {"version": "1.4.2"})
    assert [h["status"] for h in job["hosts"]] == ["failed", "succeeded"]
    rows = servers(console, http)
    assert (rows["h05"]["version"], rows["h05"]["version_state"]) == ("1.4.2", "verified")
    assert (rows["h06"]["version"], rows["h06"]["version_state"]) == ("1.4.3", "verified")


def test_item_5_a_cancel_says_stopped_term_and_its_note_goes_when_the_job_ends(
        browser, console):
    http = console.login()
    job_id = start_job(console, http, {"runbook": "sleepy", "params": {"seconds": "309"},
                                   "servers": ["h06"]})
    page = browser.new_page()
    log_in(page, console.url)
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator('.host-log[data-host="h06"] .line').first).to_have_text("napping",
                                                                               timeout=LONG)

    press_cancel(page)

    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    reason = page.locator('#hosts tr[data-host="h06"] .host-reason')
    expect(reason).to_have_text("stopped (TERM): job cancelled")
    expect(page.locator('.step-header[data-step="nap"] .step-result')).to_contain_text(
        "cancelled")
    expect(page.locator('.step-header[data-step="nap"] .step-result')).not_to_contain_text(
        "exit code")
    expect(page.locator("#job-message")).not_to_contain_text("cancelling")
    host = job_of(console, http, job_id)["hosts"][0]
    assert (host["status"], host["exit_code"]) == ("cancelled", None)
    done = next(e["data"] for e in stored_events(console, http, job_id)
                if e["type"] == "step_finished")
    assert (done["signal"], done["exit_code"]) == ("TERM", None)


def test_item_5_a_step_that_ignores_term_is_killed_and_says_so(console):
    http = console.login()
    job_id = start_job(console, http, {"command": f"trap '' TERM; echo ignoring; sleep {STUBBORN}",
                                   "servers": ["h07"]})
    wait_until(lambda: any(e["type"] == "output" for e in stored_events(console, http, job_id)),
               what="the command running")
    http.post(f"{console.url}/api/jobs/{job_id}/cancel", timeout=10)
    try:
        host = finished_job(console, http, job_id)["hosts"][0]
        gone = wait_until(lambda: not sleeping(STUBBORN), timeout=20, what="the sleep gone")
    finally:
        for pid in sleeping(STUBBORN):  # only if the test failed: it started this one
            subprocess.run(["kill", "-KILL", pid], check=False)

    assert (host["status"], host["reason"]) == ("cancelled", "stopped (KILL): job cancelled")
    assert gone


def test_item_5_the_step_wrappers_own_messages_stay_out_of_the_output(console, sshd_fleet):
    http = console.login()
    runs = root_of(sshd_fleet, "h08") / ".patchbay" / "runs"
    subprocess.run(["rm", "-rf", str(runs)], check=True)
    runs.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text("not a directory\n")  # the run directory cannot be made
    try:
        job_id = start_job(console, http, {"command": "echo hello", "servers": ["h08"]})
        host = finished_job(console, http, job_id)["hosts"][0]
    finally:
        runs.unlink()
    output = [line for e in stored_events(console, http, job_id) if e["type"] == "output"
              for line in e["data"]["lines"]]

    assert output == []
    assert host["status"] == "failed"
    assert re.fullmatch(r"could not create the run directory ~/\.patchbay/runs/\w+/h08 on "
                        r"the server: mkdir: cannot create directory .*Not a directory ?",
                        host["reason"]), host["reason"]


def sleeping(seconds: str) -> list[str]:
    """PIDs of `sleep SECONDS` processes (the sshd servers are local)."""
    found = subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True,
                           text=True, check=False)
    return found.stdout.split()


# -- the rules behind item 1 and 4, without servers ---------------------------------------

def _plan(captures: list[str | None], rollback: list[str | None]):
    from tasks.planning.job_plan import HostPlan
    from tasks.planning.rendered_steps import RenderedStep
    from tasks.transport.protocol import Target

    def steps(names):
        return [RenderedStep(f"s{i}", "true", None, capture) for i, capture in enumerate(names)]

    return HostPlan(None, "h", Target("h", "127.0.0.1", 22, "root"), steps(captures),
                    steps(rollback))


@pytest.mark.parametrize(("captures", "status", "facts", "unreported", "state"), [
    ([None, "version"], "succeeded", {"version": "1.4.4"}, False, "verified"),
    ([None, "version"], "cancelled", {}, True, "unverified"),  # deployed, not reported
    ([None, "version"], "cancelled", {}, False, None),  # cancelled before any step
    (["version", None], "failed", {"version": "1.4.4"}, True, "unverified"),
    (["version", None], "succeeded", {"version": "1.4.4"}, True, "verified"),
    ([None, None], "cancelled", {}, True, None),  # reports no version: nothing learnt
])
def test_item_1_a_version_is_verified_only_when_reported_after_the_last_step(
        captures, status, facts, unreported, state):
    from tasks.running.outcomes import version_state

    assert version_state(_plan(captures, []), status, facts, unreported) == state


def test_item_4_a_resumed_job_keeps_the_version_its_rollback_reported():
    from tasks.events.resume import ON_FAILURE, STEPS, read_progress

    def event(seq, type_, **data):
        return {"seq": seq, "ts": float(seq), "type": type_, "host": "h", "data": data}

    events = [
        event(1, "host_started"),
        event(2, "step_started", step="deploy", index=0, phase=STEPS),
        event(3, "step_finished", step="deploy", index=0, phase=STEPS, status="failed",
              exit_code=3, reason="step 'deploy' exited with code 3"),
        event(4, "step_started", step="rollback", index=0, phase=ON_FAILURE),
        event(5, "output", stream="stdout", step="rollback", lines=["rolled back", "1.4.2"],
              offset=18),
        event(6, "step_finished", step="rollback", index=0, phase=ON_FAILURE, status="ok"),
    ]

    host = read_progress(events, ["h"], {STEPS: [None, "version"], ON_FAILURE: ["version"]},
                         {STEPS: ["deploy", "health check"], ON_FAILURE: ["rollback"]}
                         ).hosts["h"]

    assert (host.facts, host.version_unreported, host.next_step) == \
        ({"version": "1.4.2"}, False, None)
    assert host.failure["on_failure"] == "succeeded"
