"""Issue #15, items 10, 11 and 13: plain words on the job page (the stream line, step
headers, stderr, the logs header, short logs, the favicon), readable audit details, and
every page usable on a 390 px phone.

Screenshots of every main page at 390 x 844 and 1440 x 900 are kept under
``test-artifacts/screenshots/`` (ignored by git) for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, PROJECT, write_inventory
from tests.support.console_world import LONG, log_in, runbook_dir
from tests.support.waiting import wait_until

SCREENSHOTS = PROJECT / "test-artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
FAIL_BG = "rgb(255, 241, 239)"  # a failed step's stderr: a red row

# A step opens with the usual shell prelude, prints a long line and informational
# stderr; the second step fails on the server named by fail_on.
LAYOUT = """\
name: layout
description: A shell prelude, a long line, informational stderr and a failure where asked.
params:
  fail_on:
    required: false
    default: none
    pattern: '^[a-z0-9][a-z0-9-]*$'
steps:
  - name: prepare
    run: |
      set -eu

      # what this host is
      echo preparing {{ host.name }}
      echo "warning: disk is 71% full" >&2
      echo "note: using the cached build" >&2
      i=0; printf 'long-line-start'
      while [ $i -lt 40 ]; do printf ' segment-%02d' $i; i=$((i + 1)); done
      echo ' long-line-end'
  - name: check
    run: |
      set -eu
      if [ {{ host.name }} = {{ params.fail_on }} ]; then
        echo "failed on" {{ host.name }} >&2; exit 4
      fi
      echo checked
"""


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    """A console whose alice is an admin (every page), with the layout runbook."""
    books = runbook_dir(tmp_path)
    (books / "layout.yml").write_text(LAYOUT)
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, runbook_dir=books,
                               users=[("alice", PASSWORD, "admin"),
                                      ("bob", PASSWORD, "operator")])


def finished_job(console, runbook: str = "layout", servers: tuple[str, ...] = ("h01", "h02"),
                 **params: str) -> int:
    """Run ``runbook`` over the API and wait for its end; returns the job id."""
    http = console.login()
    job_id = http.post(f"{console.url}/api/jobs", json={
        "runbook": runbook, "params": params, "servers": list(servers)}).json()["job_id"]
    wait_until(lambda: http.get(f"{console.url}/api/jobs/{job_id}").json()["job"]["status"]
               != "running", timeout=60, what=f"job {job_id} finished")
    return job_id


def open_job(page: Page, console, job_id: int) -> None:
    page.goto(f"{console.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).not_to_have_text("loading…", timeout=LONG)
    expect(page.locator("body")).to_have_attribute("data-pending-rows", "0")


def phone_page(browser, console) -> Page:
    page = browser.new_context(viewport=PHONE).new_page()
    log_in(page, console.url)
    return page


def log_line(page: Page, host: str, text: str):
    return page.locator(f'.host-log[data-host="{host}"] .line', has_text=text)


# --- item 10: jargon and noise ------------------------------------------------------------

def test_item_10_the_stream_line_says_live_up_to_date(browser, console):
    job_id = finished_job(console)
    page = browser.new_page()
    log_in(page, console.url)
    open_job(page, console, job_id)
    last_seq = page.locator("body").get_attribute("data-applied-seq")

    health = page.locator("#stream-health")
    expect(health).to_have_text("live · up to date")
    expect(health).to_have_attribute("title", re.compile(rf"\bseq {last_seq}\b"))
    expect(health).to_have_attribute("title", re.compile(r"caught up \d+ events"))
    expect(health).to_have_attribute("data-transport", re.compile(r"^(websocket|polling)$"))


def test_item_10_step_headers_show_the_steps_own_first_command(browser, console):
    job_id = finished_job(console)
    page = browser.new_page()
    log_in(page, console.url)
    open_job(page, console, job_id)

    log = page.locator('.host-log[data-host="h01"]')
    prepare = log.locator('.step-header[data-step="prepare"] .step-command')
    check = log.locator('.step-header[data-step="check"] .step-command')
    expect(prepare).to_have_text("$ echo preparing h01")
    expect(check).to_have_text("$ if [ h01 = none ]; then")
    expect(prepare).to_have_attribute("title", re.compile(r"^set -eu\n\n# what this host is\n"))
    expect(log.locator(".step-command", has_text="set -eu")).to_have_count(0)


def test_item_10_stderr_of_a_succeeded_step_is_quiet_and_red_only_for_a_failure(
        browser, console):
    job_id = finished_job(console, fail_on="h02")
    page = browser.new_page()
    log_in(page, console.url)
    open_job(page, console, job_id)

    def looks(host: str, text: str) -> dict:
        return log_line(page, host, text).evaluate(
            "row => ({cls: row.className, bg: getComputedStyle(row).backgroundColor,"
            " color: getComputedStyle(row).color,"
            " marker: getComputedStyle(row, '::before').content})")

    warning = looks("h01", "warning: disk is 71% full")
    note = looks("h02", "note: using the cached build")
    failure = looks("h02", "failed on h02")

    for quiet in (warning, note):
        assert "stderr" in quiet["cls"].split()
        assert quiet["bg"] == "rgba(0, 0, 0, 0)", quiet
        assert quiet["color"] == "rgb(26, 29, 33)", quiet  # --text, not red
        assert "err" not in quiet["marker"].split("/")[0], quiet
    assert "step-failed" in failure["cls"].split()
    assert failure["bg"] == FAIL_BG


def test_item_10_the_logs_header_names_the_selection_and_its_button_apart(browser, console):
    job_id = finished_job(console)
    page = browser.new_page()
    log_in(page, console.url)
    open_job(page, console, job_id)
    label, button = page.locator("#log-selection"), page.locator("#show-all-logs")

    expect(label).to_have_text("Showing all servers")
    expect(button).to_be_hidden()
    page.click('#hosts tr[data-host="h02"] .show-log')
    expect(label).to_have_text("Showing h02")
    expect(button).to_have_text("Show all servers")
    button.click()
    expect(label).to_have_text("Showing all servers")
    expect(button).to_be_hidden()


def test_item_10_a_short_log_fits_its_lines(browser, console):
    job_id = finished_job(console, runbook="basic", servers=("h01",), message="hi")
    page = browser.new_page(viewport=DESKTOP)
    log_in(page, console.url)
    open_job(page, console, job_id)

    log = page.locator('.host-log[data-host="h01"]')
    rows = log.locator(".log-row").count()
    box = log.evaluate("node => ({inner: node.clientHeight, content: node.scrollHeight})")
    assert rows > 50  # the count step prints 50 lines: a long log still scrolls
    assert box["content"] > box["inner"]

    short = finished_job(console, runbook="echo-arg", servers=("h01",), value="a b")
    open_job(page, console, short)
    log = page.locator('.host-log[data-host="h01"]')
    rows = log.locator(".log-row").count()
    box = log.evaluate("node => ({inner: node.clientHeight, content: node.scrollHeight})")
    assert rows < 8
    assert box["inner"] <= (rows + 2) * 20, box  # no large blank panel
    assert box["content"] <= box["inner"] + 1, box


def test_item_10_the_favicon_is_served_to_everyone(client):
    icon = client.get("/favicon.ico")
    login_page = client.get("/login").get_data(as_text=True)

    assert icon.status_code == 200
    assert icon.mimetype in ("image/x-icon", "image/vnd.microsoft.icon", "image/svg+xml")
    assert len(icon.data) > 0
    assert re.search(r'<link rel="icon"[^>]+href="/static/favicon\.svg"', login_page)


# --- item 11: the audit page ------------------------------------------------------------

def test_item_11_audit_details_are_key_value_text_and_job_targets_are_links(app, client,
                                                                             auth):
    from services.audit import record

    auth.create("root", role="admin")
    auth.login("root")
    with app.test_request_context():
        record("job.start", "job #7", username="root", runbook="basic",
               params={"message": "fish & chips <b>", "fail_on": "none"},
               servers=["h01", "h02"], tags=None, via="page")
        record("user.role", "bob", username="root", old="viewer", new="operator")

    html = client.get("/admin/audit").get_data(as_text=True)
    start = re.search(r'<tr data-action="job\.start">.*?</tr>', html, re.S).group(0)
    role = re.search(r'<tr data-action="user\.role">.*?</tr>', html, re.S).group(0)

    assert "\\u0026" not in html and "\\u003c" not in html and '{"' not in html
    assert '<a href="/jobs/7">job #7</a>' in start
    assert "<dt>runbook</dt><dd>basic</dd>" in start
    assert ("<dt>params</dt><dd>message=fish &amp; chips &lt;b&gt;, fail_on=none</dd>"
            in start)
    assert "<dt>servers</dt><dd>h01, h02</dd>" in start
    assert "<dt>tags</dt><dd>—</dd>" in start
    assert "<dt>old</dt><dd>viewer</dd><dt>new</dt><dd>operator</dd>" in role.replace(
        "</div><div>", "")
    assert "<a " not in role


# --- item 13: the phone ---------------------------------------------------------------------

def test_item_13_the_phone_header_is_one_row_with_a_menu(browser, console):
    page = phone_page(browser, console)
    header = page.locator(".site-header-inner")
    toggle = page.locator("#menu-toggle")
    audit = page.locator(".site-nav a", has_text="Audit")

    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(audit).to_be_hidden()
    brand = page.locator(".brand").bounding_box()
    assert header.bounding_box()["height"] < 2.2 * brand["height"] + 24  # one row
    assert toggle.bounding_box()["x"] + toggle.bounding_box()["width"] <= PHONE["width"]

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(audit).to_be_visible()
    box = audit.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # not clipped
    audit.click()
    expect(page).to_have_url(f"{console.url}/admin/audit")
    expect(page.locator("#menu-toggle")).to_have_attribute("aria-expanded", "false")

    desktop = browser.new_context(viewport=DESKTOP).new_page()
    log_in(desktop, console.url)
    expect(desktop.locator("#menu-toggle")).to_be_hidden()
    expect(desktop.locator(".site-nav a", has_text="Audit")).to_be_visible()


def test_item_13_servers_are_cards_with_status_and_reason_first_on_a_phone(browser, console):
    page = phone_page(browser, console)
    page.goto(f"{console.url}/servers")
    card = page.locator('#servers tr[data-server="h01"]')
    expect(card).to_have_attribute("data-reachable", "true")

    order = card.evaluate(
        "row => Array.from(row.children).filter(c => getComputedStyle(c).display !== 'none')"
        ".sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)"
        ".map(c => c.className || c.tagName)")
    labels = card.locator("td").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before').content)")
    box = card.bounding_box()

    assert order[:3] == ["TH", "server-reach", "server-held"], order
    assert '"Reachable"' in labels and '"Address"' in labels, labels
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert page.evaluate("document.querySelector('#servers').closest('.table-wrap')"
                         ".scrollWidth <= window.innerWidth")


def test_item_13_log_lines_wrap_on_a_phone_and_the_toggle_unwraps_them(browser, console):
    job_id = finished_job(console)
    page = phone_page(browser, console)
    open_job(page, console, job_id)
    toggle = page.locator("#wrap-logs")
    line = log_line(page, "h01", "long-line-start")
    log = page.locator('.host-log[data-host="h01"]')

    def fits() -> bool:
        return log.evaluate("node => node.scrollWidth <= node.clientWidth")

    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert fits()
    assert line.bounding_box()["height"] > 30  # the long line takes several rows
    expect(line).to_contain_text("long-line-end")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    wait_until(lambda: not fits(), what="the long line unwrapped")
    assert line.bounding_box()["height"] == 20

    page.reload()  # the choice is kept
    expect(page.locator("#wrap-logs")).to_have_attribute("aria-pressed", "false")

    desktop = browser.new_context(viewport=DESKTOP).new_page()
    log_in(desktop, console.url)
    open_job(desktop, console, job_id)
    expect(desktop.locator("#wrap-logs")).to_have_attribute("aria-pressed", "false")


def main_pages(console, job_id: int) -> dict[str, str]:
    return {"dashboard": "/", "jobs": "/jobs", "job": f"/jobs/{job_id}",
            "servers": "/servers", "audit": "/admin/audit", "users": "/admin/users",
            "account": "/account"}


def overflow(page: Page) -> dict:
    return page.evaluate(
        "() => ({width: window.innerWidth, scroll: document.documentElement.scrollWidth,"
        " wide: Array.from(document.querySelectorAll('body *')).filter(n => {"
        "   const r = n.getBoundingClientRect();"
        "   return r.width && r.right > window.innerWidth + 1 && !n.closest('.table-wrap,"
        " .host-log, .search-list'); }).slice(0, 5).map(n => n.tagName + '.' + n.className"
        " + '#' + n.id)})")


def test_item_13_no_main_page_overflows_a_phone_and_screenshots_are_kept(browser, console):
    job_id = finished_job(console, fail_on="h02")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wide: dict[str, dict] = {}
    shots: list[Path] = []
    for size, viewport in (("390x844", PHONE), ("1440x900", DESKTOP)):
        page = browser.new_context(viewport=viewport).new_page()
        log_in(page, console.url)
        for name, path in main_pages(console, job_id).items():
            if name == "job":
                open_job(page, console, job_id)
            else:
                page.goto(f"{console.url}{path}")
                page.wait_for_load_state("load")
            if viewport is PHONE:
                measured = overflow(page)
                if measured["scroll"] > measured["width"]:
                    wide[name] = measured
            shot = SCREENSHOTS / f"{name}-{size}.png"
            page.screenshot(path=str(shot), full_page=True)
            shots.append(shot)

    assert wide == {}
    assert all(shot.stat().st_size > 0 for shot in shots) and len(shots) == 14
