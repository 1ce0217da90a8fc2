"""Issue 25: the job page's time left never says a number it cannot back. A runbook of a
gated first step, a download that prints its percentage and a short last step, on a
real OpenSSH server: the first job says "estimating…"; the next one counts from the
first one's steps, and then from the download's own percentage. Real console process,
real sshd, Chromium."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from tests.conftest import write_inventory
from tests.support.console_world import USERS, finished_job, log_in, runbook_dir, start_job

pytestmark = pytest.mark.browser

# The first step waits for a file the test writes: the page is seen while it runs.
TIMED = """\
name: timed
description: A gated first step, a download that says its percentage, a short last step.
params:
  token:
    pattern: '^[a-z0-9]{8,32}$'
steps:
  - name: prepare
    run: |
      gate={{ vars.root }}/eta-go-{{ params.token }}
      until [ -e "$gate" ]; do sleep 0.1; done
      echo ready
  - name: download
    run: |
      i=0
      while [ $i -lt 100 ]; do echo "downloading: $i% done"; sleep 0.6; i=$((i + 10)); done
      echo "downloading: 100% done"
  - name: finish
    run: sleep 0.3; echo done
"""
SECONDS = 15_000  # ms: a few ticks of the page's second loop on a loaded machine


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    books = runbook_dir(tmp_path)
    (books / "timed.yml").write_text(TIMED)
    return live_server_factory(inventory=inventory, runbook_dir=books, users=USERS)


def test_estimating_first_then_earlier_runs_then_the_steps_own_percentage(
        browser, console, sshd_fleet):
    host = sshd_fleet.hosts[0]
    http = console.login()
    page = browser.new_page()
    log_in(page, console.url)
    eta = page.locator("#eta")

    first = secrets.token_hex(6)
    job_id = start_job(console, http, {"runbook": "timed", "servers": [host.name],
                                       "params": {"token": first}})
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(eta).to_have_text("Time left: estimating…", timeout=SECONDS)
    (host.root / f"eta-go-{first}").touch()
    assert finished_job(console, http, job_id)["status"] == "succeeded"
    expect(eta).to_be_hidden()

    second = secrets.token_hex(6)
    job_id = start_job(console, http, {"runbook": "timed", "servers": [host.name],
                                       "params": {"token": second}})
    page.goto(f"{console.url}/jobs/{job_id}")
    # Once the gated step outruns the first job's, the label says that too.
    expect(eta).to_have_text(re.compile(r"^About \d+ s left \(from 1 earlier run of each step"
                                        r"(; prepare is taking longer than usual)?\)$"),
                             timeout=SECONDS)
    (host.root / f"eta-go-{second}").touch()
    expect(eta).to_have_text(re.compile(
        r"^About \d+ s left \(download at \d+ %; from 1 earlier run of each step\)$"),
        timeout=SECONDS)
    assert finished_job(console, http, job_id)["status"] == "succeeded"
    expect(eta).to_be_hidden()
