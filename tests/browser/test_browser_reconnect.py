"""The job page while a server's SSH connection is down: "reconnecting to …", then the
step's output going on where it stopped. Chromium, a real console process, a real sshd
whose listener and session the test kills and brings back."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest
from playwright.sync_api import expect

from tests.browser.test_browser import LONG, log_in
from tests.conftest import write_inventory
from tests.support.sshd_fleet import SSHD, start_fleet

pytestmark = pytest.mark.browser


def test_the_job_page_shows_reconnecting_until_the_server_is_back(
        browser, live_server_factory, tmp_path):
    lonely = start_fleet(tmp_path / "fleet", 1, first_address="127.0.0.122", name_prefix="r")
    host = lonely.hosts[0]
    inventory = write_inventory(tmp_path / "inventory.yml", lonely.inventory_entries())
    server = live_server_factory(inventory=inventory, env={"PATCHBAY_REATTACH_TIMEOUT": "120"})
    page = browser.new_page()
    log_in(page, server.url)
    revived: list[subprocess.Popen] = []
    try:
        http = server.login()
        client = server.socket(http)
        ack = client.call("job:start", {"runbook": "handoff", "params": {"fail_on": "none"},
                                        "servers": [host.name]}, timeout=10)
        client.disconnect()
        assert ack["ok"], ack
        page.goto(f"{server.url}/jobs/{ack['job_id']}")
        row = page.locator(f'tr[data-host="{host.name}"]')
        expect(page.locator(".host-log .line", has_text="holding")).to_be_attached(timeout=LONG)

        sessions = lonely.session_processes()
        for process in lonely.processes:
            process.send_signal(signal.SIGKILL)
        for pid in sessions:
            subprocess.run(["kill", "-9", str(pid)], check=False)
        expect(row).to_have_attribute("data-reconnecting", "true", timeout=LONG)
        expect(row.locator(".host-reconnecting")).to_have_text(
            re.compile(f"reconnecting to {host.name}"))

        (host.root / "release").touch()  # the step ends while the console cannot see it
        revived.append(subprocess.Popen(
            [SSHD, "-f", str(lonely.directory / "sshd_0.conf"), "-D", "-E",
             str(lonely.directory / "sshd_revived.log")], stdin=subprocess.DEVNULL))
        expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)
        expect(row).to_have_attribute("data-reconnecting", "false")
        log = page.locator(f'.host-log[data-host="{host.name}"]')
        expect(log).to_contain_text("released")
        expect(log).to_contain_text("after the hold")
    finally:
        (host.root / "release").unlink(missing_ok=True)
        for process in revived:
            process.terminate()
            process.wait(timeout=10)
        lonely.stop()
