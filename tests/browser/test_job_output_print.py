"""Issue 25: a finished job printed whole. A job of two steps (both streams, a secret
parameter) on real OpenSSH servers; the job page's "Show all output" opens every line
of every server in the DOM, in the stored order, and in print media the navigation is
gone, each server starts a page, nothing is dark, and the secret is nowhere. Real
console process, real sshd, Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD, write_inventory
from tests.support.console_world import (
    USERS,
    finished_job,
    log_in,
    logs_from_events,
    runbook_dir,
    start_job,
    stored_events,
)

pytestmark = pytest.mark.browser

SECRET = "pr1nt-secret-7c41a9"
PRINTED = """\
name: printed
description: Two steps on both streams, with a secret parameter.
params:
  password:
    secret: true
    pattern: '^[A-Za-z0-9][A-Za-z0-9-]{7,63}$'
steps:
  - name: greet
    run: |
      echo "hello from "{{ host.name }}" <b>&amp;</b>"
      echo "a warning on stderr" >&2
      echo "the password is "{{ params.password }}
  - name: count
    run: |
      i=1; while [ $i -le 120 ]; do echo {{ host.name }}" line $i"; i=$((i + 1)); done
"""
HOSTS = ["h01", "h02", "h03"]


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    books = runbook_dir(tmp_path)
    (books / "printed.yml").write_text(PRINTED)
    return live_server_factory(inventory=inventory, runbook_dir=books,
                               users=USERS + [("vera", PASSWORD, "viewer")])


def test_show_all_output_prints_every_line_without_the_nav_a_page_per_server(
        browser, console):
    http = console.login()
    job_id = start_job(console, http, {"runbook": "printed", "servers": HOSTS,
                                       "params": {"password": SECRET}})
    assert finished_job(console, http, job_id)["status"] == "succeeded"
    stored = logs_from_events(stored_events(console, http, job_id))
    page = browser.new_page()
    log_in(page, console.url, "vera")
    page.goto(f"{console.url}/jobs/{job_id}")

    page.click("#show-all-output")
    expect(page).to_have_url(f"{console.url}/jobs/{job_id}/output")
    expect(page.locator(".site-header")).to_be_visible()  # on screen
    page.emulate_media(media="print")

    expect(page.locator(".site-header")).to_be_hidden()
    expect(page.locator(".output-actions")).to_be_hidden()
    assert page.locator(".output-server").evaluate_all(
        "sections => sections.map(s => s.dataset.host)") == HOSTS
    for host in HOSTS:
        section = page.locator(f'.output-server[data-host="{host}"]')
        assert section.locator(".output-line").all_text_contents() == stored[host]
        assert len(stored[host]) == 123 and f"{host} line 120" in stored[host]
        assert "the password is ••••" in stored[host]
        assert section.locator(".output-line.stderr").all_text_contents() == \
            ["a warning on stderr"]
        assert section.evaluate("e => getComputedStyle(e).breakBefore") == "page", host
        expect(section.locator(".output-server-title")).to_contain_text(host)
    dark = page.evaluate("""() => [...document.querySelectorAll('*')].filter(e => {
        const m = getComputedStyle(e).backgroundColor.match(/\\d+(\\.\\d+)?/g);
        return m && (m.length < 4 || +m[3] > 0) && +m[0] + +m[1] + +m[2] < 600;
    }).map(e => e.tagName + '.' + e.className)""")
    assert dark == []
    content = page.content()
    assert SECRET not in content
    expect(page.locator("#output-params")).to_have_text("password=••••")
    # stdout and stderr are two SSH streams: their lines' order against each other is
    # the order they were read in, so the line is looked for, not expected first.
    assert "hello from h01 <b>&amp;</b>" in stored["h01"]  # shown as text, not markup
    assert "<b>&amp;</b>" not in content and page.locator(".output-line b").count() == 0
