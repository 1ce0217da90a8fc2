"""Issue 32 (item 4) in Chromium: an unknown job's page has the layout (header, nav or
the phone's menu), says which job does not exist, and its link leads back to the jobs;
an unknown server's log download says so in plain text. At 1440 and 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.console_world import log_in

pytestmark = pytest.mark.browser
WIDTHS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def console(live_server_factory):
    return live_server_factory()


@pytest.mark.parametrize("width", WIDTHS)
def test_an_unknown_job_has_the_layout_the_sentence_and_a_link_back(console, browser, width):
    page = browser.new_page(viewport=WIDTHS[width])
    log_in(page, console.url)

    answer = page.goto(f"{console.url}/jobs/9999")

    assert answer.status == 404
    expect(page).to_have_title("Not found · Patchbay")
    expect(page.locator("header.site-header .brand")).to_be_visible()
    if width == "phone":  # the nav is folded into the menu
        page.click("#menu-toggle")
    expect(page.locator("#current-user")).to_be_visible()
    expect(page.locator("main h1")).to_have_text("Not found")
    expect(page.locator("#not-found-message")).to_have_text("Job #9999 does not exist.")
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]["width"]
    page.click("#back-link")
    expect(page).to_have_url(f"{console.url}/jobs")
    expect(page.locator("main h1")).to_be_visible()

    text = page.goto(f"{console.url}/jobs/9999/log.txt?host=gs-99")
    assert text.status == 404 and text.headers["content-type"].startswith("text/plain")
    expect(page.locator("body")).to_have_text(re.compile(r"Not found: job #9999 does not exist\."))
    page.close()
