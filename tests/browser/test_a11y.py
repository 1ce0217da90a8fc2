"""Issue 32, item 17: every text meets WCAG AA contrast, and every control and link has
a name. axe-core (the version tests/a11y/package-lock.json pins, installed by `make test`
with `npm ci`) runs in Chromium on the main pages at 1440 and 390 px: login, dashboard,
jobs list, a job page with a running and a failed server, a paused job, servers, account,
the admin pages (users, audit, webhooks), the printable output page and a 403 page."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, PROJECT, require_tool, write_inventory
from tests.support.console_world import LONG, job_of, log_in, paused_rollout, runbook_dir
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

AXE = PROJECT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
# Contrast, and the rules that every form control, button, link and widget has a name.
RULES = [
    "color-contrast", "label", "button-name", "link-name", "select-name",
    "input-button-name", "aria-input-field-name", "aria-toggle-field-name",
    "aria-command-name", "aria-progressbar-name", "aria-meter-name", "aria-tooltip-name",
    "form-field-multiple-labels", "image-alt", "svg-img-alt", "summary-name",
    "document-title",
]
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
# One server fails at once, the other runs until the test ends (h01's address tells it).
SPLIT = ('case "$SSH_CONNECTION" in *" 127.0.0.101 "*) echo "disk full" >&2; exit 3;; '
         '*) echo running; sleep 600;; esac')


@pytest.fixture(scope="module")
def axe_source() -> str:
    require_tool(AXE.exists(), "axe-core (tests/a11y: `make a11y-deps`, which needs npm)")
    return AXE.read_text()


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, runbook_dir=runbook_dir(tmp_path),
                               users=[("alice", PASSWORD, "admin"),
                                      ("vera", PASSWORD, "viewer")])


def violations(page: Page, axe_source: str) -> list[str]:
    """axe's violations of RULES on the page as it is now, one line per element."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)  # evaluated through the debugger: the CSP does not apply
    found = page.evaluate("""async (rules) => {
        const result = await axe.run(document, {runOnly: {type: "rule", values: rules},
                                                resultTypes: ["violations"]});
        return result.violations.flatMap((v) => v.nodes.map((n) =>
            v.id + ": " + n.target.join(" ") + " (" + (n.any[0] ? n.any[0].message
              : n.failureSummary) + ")"));
    }""", RULES)
    return [f"{page.url}: {line}" for line in found]


def open_menu(page: Page) -> None:
    """On a phone the nav and the user name fold into a menu: open it, so they count."""
    toggle = page.locator("#menu-toggle")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false":
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")


def jobs(console) -> dict[str, int]:
    """A finished job, a job with a running and a failed server, and a paused rollout."""
    http = console.login()
    finished = http.post(f"{console.url}/api/jobs", timeout=30, json={
        "runbook": "flaky", "params": {"fail_on": "h08"}, "servers": ["h07", "h08"]},
    ).json()["job_id"]
    wait_until(lambda: job_of(console, http, finished)["status"] == "failed", 60,
               f"job {finished} to fail")
    split = http.post(f"{console.url}/api/jobs", timeout=30, json={
        "command": SPLIT, "servers": ["h03", "h01"]}).json()["job_id"]
    paused = paused_rollout(console, http, ["h05", "h06"])
    wait_until(lambda: [h["status"] for h in job_of(console, http, split)["hosts"]]
               == ["running", "failed"], 60, f"job {split}: h03 running, h01 failed")
    http.post(f"{console.url}/api/webhooks", timeout=30, json={
        "url": "https://chat.example.com/hook", "secret": "a11y-test-secret-0123456789",
        "events": ["job_finished"]}).raise_for_status()
    return {"finished": finished, "split": split, "paused": paused}


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_item_17_main_pages_have_no_contrast_or_name_violations(
        browser, console, axe_source, viewport):
    ids = jobs(console)
    context = browser.new_context(viewport=VIEWPORTS[viewport])
    page = context.new_page()
    found: list[str] = []

    page.goto(f"{console.url}/login")
    found += violations(page, axe_source)
    log_in(page, console.url)
    for path in ("/", "/jobs", "/servers", "/account", "/admin/users", "/admin/audit",
                 "/admin/webhooks", f"/jobs/{ids['finished']}/output"):
        page.goto(console.url + path)
        page.wait_for_load_state()
        open_menu(page)
        found += violations(page, axe_source)
    for name in ("split", "paused", "finished"):
        page.goto(f"{console.url}/jobs/{ids[name]}")
        expect(page.locator("#job-status")).not_to_have_text("loading…", timeout=LONG)
        expect(page.locator("body")).to_have_attribute("data-pending-rows", "0")
        open_menu(page)
        found += violations(page, axe_source)

    viewer = browser.new_context(viewport=VIEWPORTS[viewport]).new_page()
    log_in(viewer, console.url, "vera")
    for path in ("/", "/admin/users"):  # a viewer's dashboard; a 403
        response = viewer.goto(console.url + path)
        viewer.wait_for_load_state()
        open_menu(viewer)
        found += violations(viewer, axe_source)
    assert response is not None and response.status == 403

    assert not found, "axe-core found:\n" + json.dumps(found, indent=1)
