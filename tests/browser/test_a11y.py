"""Issue 32, item 17: every text meets WCAG AA contrast, and every control and link has
a name. axe-core (the version tests/a11y/package-lock.json pins, installed by `make test`
with `npm ci`) runs in Chromium on the main pages at 1440 and 390 px: login, dashboard,
jobs list, a job page with a running and a failed server (its log rows shown: stdout,
stderr, a failed step's stderr), a finished job's page with its output, a paused job,
servers (one failed, one held by a running job), account, the admin pages (users, audit,
nodes, webhooks, a webhook's deliveries), the printable output page, a 404 and a 403."""

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
# The log rows each job page shows, whose colours axe must have measured: stdout, the
# stderr of a failed step, a note ("connecting to …"), a step's header.
ROWS = [".log-row.line.stdout", ".log-row.line.stderr:not(.step-failed)",
        ".log-row.line.stderr.step-failed", ".log-row.log-note", ".log-row.step-header"]
# (The paused job's log follows its end, so its first rows, the stderr one among them,
# are scrolled out of its box: axe cannot measure them there.)
LOG_ROWS = {"split": ROWS, "finished": ROWS[:1] + ROWS[2:], "paused": ROWS[:1]}
# What a page must show, and axe must have measured, before it counts (the servers page
# draws its rows from a fetch): a failed server, one held by the running job, the jobs'
# statuses.
SHOWN = {
    "/servers": [".badge.status-failed", ".server-held .badge.status-running",
                 ".server-held .muted"],
    "/jobs": [".badge.status-failed", ".badge.status-running", ".badge.status-paused"],
    "/": [".badge.status-failed"],
}
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
# One server fails at once, the other runs until the test ends (h01's address tells it).
SPLIT = ('case "$SSH_CONNECTION" in *" 127.0.0.101 "*) echo "disk full" >&2; exit 3;; '
         '*) echo running; echo "a warning" >&2; sleep 600;; esac')


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


def violations(page: Page, axe_source: str, checked: list[str] | tuple = ()) -> list[str]:
    """axe's violations of RULES on the page as it is now, one line per element, screen
    by screen from the top (axe measures the contrast of what is in view only); and a
    line for each selector in ``checked`` none of whose elements axe measured and found
    to pass (one it could not measure would otherwise go unnoticed)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)  # evaluated through the debugger: the CSP does not apply
    found = page.evaluate("""async ([rules, checked]) => {
        const lines = new Set();
        const passed = [];
        const unsure = [];  // [element, why axe could not measure it]
        const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
        for (let y = 0; ; y += window.innerHeight) {
            window.scrollTo(0, y);
            await frame();
            const result = await axe.run(document, {runOnly: {type: "rule", values: rules},
                                                    elementRef: true,
                                                    resultTypes: ["violations", "passes",
                                                                  "incomplete"]});
            for (const v of result.violations) {
                for (const n of v.nodes) {
                    lines.add(v.id + ": " + n.target.join(" ") + " (" + (n.any[0]
                      ? n.any[0].message : n.failureSummary) + ")");
                }
            }
            const contrast = result.passes.find((rule) => rule.id === "color-contrast");
            for (const n of contrast ? contrast.nodes : []) {
                passed.push(n.element);
            }
            for (const rule of result.incomplete.filter((r) => r.id === "color-contrast")) {
                for (const n of rule.nodes) {
                    unsure.push([n.element, n.any[0] ? n.any[0].message : ""]);
                }
            }
            if (y + window.innerHeight >= document.documentElement.scrollHeight) break;
        }
        window.scrollTo(0, 0);
        for (const selector of checked) {
            if (!passed.some((node) => node && node.closest(selector))) {
                const why = unsure.find(([node]) => node && node.closest(selector));
                lines.add("color-contrast: no " + selector + " was measured"
                          + (why ? " (axe: " + why[1] + ")" : ""));
            }
        }
        return [...lines];
    }""", [RULES, list(checked)])
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
    hook = http.post(f"{console.url}/api/webhooks", timeout=30, json={
        "url": "https://chat.example.com/hook", "secret": "a11y-test-secret-0123456789",
        "events": ["job_finished"]})
    hook.raise_for_status()
    return {"finished": finished, "split": split, "paused": paused,
            "hook": hook.json()["webhook"]["id"]}


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
                 "/admin/nodes", "/admin/webhooks", f"/admin/webhooks/{ids['hook']}",
                 f"/jobs/{ids['finished']}/output", "/jobs/999999"):
        page.goto(console.url + path)
        page.wait_for_load_state()
        for shown in SHOWN.get(path, []):
            expect(page.locator(shown).first).to_be_attached(timeout=LONG)
        open_menu(page)
        found += violations(page, axe_source, SHOWN.get(path, []))
    for name in ("split", "paused", "finished"):
        page.goto(f"{console.url}/jobs/{ids[name]}")
        expect(page.locator("#job-status")).not_to_have_text("loading…", timeout=LONG)
        expect(page.locator("body")).to_have_attribute("data-pending-rows", "0")
        for shown in LOG_ROWS[name]:  # the log rows count: axe skips what is not shown
            expect(page.locator(shown).first).to_be_attached(timeout=LONG)
        open_menu(page)
        found += violations(page, axe_source, LOG_ROWS[name])

    viewer = browser.new_context(viewport=VIEWPORTS[viewport]).new_page()
    log_in(viewer, console.url, "vera")
    for path in ("/", "/admin/users"):  # a viewer's dashboard; a 403
        response = viewer.goto(console.url + path)
        viewer.wait_for_load_state()
        open_menu(viewer)
        found += violations(viewer, axe_source)
    assert response is not None and response.status == 403

    assert not found, "axe-core found:\n" + json.dumps(found, indent=1)
