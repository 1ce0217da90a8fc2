"""The pages in a real browser (Chromium through Playwright) against a real server
process and the demo fleet of ``make run``."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, PROJECT

pytestmark = pytest.mark.browser
LONG = 60_000  # ms: generous deadline for a whole rollout on a loaded CI machine


@pytest.fixture
def demo_server(live_server_factory, demo_fleet):
    return live_server_factory(inventory=Path(demo_fleet["inventory"]),
                               runbook_dir=PROJECT / "runbooks")


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.stack [type=submit]")
    expect(page).to_have_url(f"{url}/")


def logs_from_events(events: list[dict]) -> dict[str, list[str]]:
    logs: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "output":
            logs.setdefault(event["host"], []).extend(event["data"]["lines"])
    return logs


def game_version(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=5) as conn:
        # "patchbay-demo-game <version> pid=<pid>": the version is the second word.
        return conn.makefile().readline().split()[1]


def test_rollout_survives_a_reload_and_shows_every_server_complete(
        browser, demo_server, demo_fleet):
    page = browser.new_page()
    log_in(page, demo_server.url)
    page.select_option("#runbook", "game-update")
    page.fill("#param-version", "1.4.2")
    page.fill("#param-fast", "true")
    page.check("#target-all")

    page.click("#run-button")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator(".host-log .line").first).to_be_attached(timeout=LONG)
    page.reload()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=LONG)

    stored = page.request.get(
        f"{demo_server.url}/api/jobs/{job_id}/events?after_seq=0&limit=5000").json()["events"]
    expect(page.locator("body")).to_have_attribute("data-applied-seq", str(stored[-1]["seq"]))
    hosts = [h["name"] for h in demo_fleet["hosts"]]
    expect(page.locator("#hosts tr[data-host]")).to_have_count(len(hosts))
    for name in hosts:
        row = page.locator(f'#hosts tr[data-host="{name}"]')
        expect(row.locator(".host-status")).to_contain_text("succeeded")
        expect(row.locator(".host-version")).to_have_text("1.4.2")
    rendered = {name: page.locator(f'.host-log[data-host="{name}"] .line').all_text_contents()
                for name in hosts}
    assert rendered == logs_from_events(stored)
    inventory = page.request.get(f"{demo_server.url}/api/servers").json()["servers"]
    assert {s["name"]: s["version"] for s in inventory} == {name: "1.4.2" for name in hosts}
    game_port = int(re.search(r"game_port: (\d+)", Path(demo_fleet["inventory"])
                              .read_text()).group(1))
    assert {game_version(h["address"], game_port) for h in demo_fleet["hosts"]} == {"1.4.2"}


def test_cancel_a_canary_rollout_from_the_page(browser, live_server_factory, sshd_fleet,
                                               tmp_path):
    from tests.conftest import write_inventory

    server = live_server_factory(inventory=write_inventory(
        tmp_path / "inventory.yml", sshd_fleet.inventory_entries()))
    page = browser.new_page()
    log_in(page, server.url)
    page.select_option("#runbook", "sleepy")
    page.fill("#param-seconds", "304")
    page.check("#target-all")
    page.fill("#strategy-batches", "1, 50%")
    page.click("#run-button")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#batch-info")).to_have_text(
        "Batch 1 of 3 running (1 server: h01)", timeout=LONG)
    canary = page.locator('#hosts tr[data-host="h01"] .host-status')
    expect(canary).to_contain_text("running", timeout=LONG)

    page.click("#cancel-button")
    page.click("#confirm-accept")  # the dialog that asks first

    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LONG)
    expect(page.locator("#job-message")).not_to_contain_text("cancelling job")  # it ended
    expect(canary).to_contain_text("cancelled")
    for name in ["h02", "h05", "h08"]:
        expect(page.locator(f'#hosts tr[data-host="{name}"] .host-status')) \
            .to_contain_text("cancelled")
    expect(page.locator("#cancel-button")).to_be_hidden()
    expect(page.locator("#rerun-button")).to_have_text("Run again")  # nothing failed
