"""Errors are shown where the eye is (issue #32, item 3): a refused Run or Preview puts
its message beside the field at fault, in view, announced (role=alert), the field marked
(aria-invalid, aria-describedby) and the focus on it; an error rendered with a page
(the admin forms) is brought into view and focused too. Real console, Chromium at 1440
and 390 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, write_inventory
from tests.support.console_world import USERS, VIEWPORTS, log_in, runbook_dir

pytestmark = pytest.mark.browser
WIDTHS = pytest.mark.parametrize("viewport", VIEWPORTS, ids=["desktop", "phone"])


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, runbook_dir=runbook_dir(tmp_path),
                               users=USERS + [("root", PASSWORD, "admin")])


def in_viewport(page: Page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and \
        box["y"] + box["height"] <= size["height"] and box["x"] + box["width"] <= size["width"]


def focused_id(page: Page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


@WIDTHS
def test_run_with_no_server_ticked_says_so_beside_the_servers(browser, console, viewport):
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url)
    page.fill("#param-message", "hello")
    page.check("#target-servers")
    page.click("#run-button")

    picker = page.locator("#server-picker")
    error = picker.locator("#form-error")  # the form's message, moved beside the servers
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("server")
    assert in_viewport(page, error)
    expect(picker).to_have_attribute("aria-invalid", "true")
    error_id = error.get_attribute("id")
    assert error_id in picker.get_attribute("aria-describedby").split()
    assert focused_id(page) == "server-h01"  # the first box to tick
    assert in_viewport(page, page.locator("#server-h01"))
    expect(page.locator(".form-error:visible")).to_have_count(1)  # said once

    page.check("#server-h01")  # fixed: the mark and the message go
    expect(picker).not_to_have_attribute("aria-invalid", "true")
    expect(error).to_have_count(0)
    expect(page.locator("#form-error")).to_be_hidden()
    assert error_id not in (picker.get_attribute("aria-describedby") or "").split()


@WIDTHS
def test_a_bad_parameter_is_marked_and_focused_with_its_message_beside_it(
        browser, console, viewport):
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url)
    page.locator("#strategy-parallel").scroll_into_view_if_needed()  # far from the top
    page.click("#run-button")  # message left empty: it is required

    field = page.locator("#param-message")
    error = page.locator('#form-error[data-error-for="param-message"]')
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    assert in_viewport(page, error)
    expect(field).to_have_attribute("aria-invalid", "true")
    assert error.get_attribute("id") in field.get_attribute("aria-describedby").split()
    assert focused_id(page) == "param-message"


@WIDTHS
def test_an_admin_form_s_error_is_beside_its_field_and_focused(browser, console,
                                                               viewport):
    page = browser.new_context(viewport=viewport).new_page()
    log_in(page, console.url, "root")
    page.goto(f"{console.url}/admin/users")
    page.fill("#username", "alice")  # taken
    page.fill("#password", "a-long-password")
    page.click("#create-user-form [type=submit]")

    field = page.locator("#username")
    error = page.locator('#admin-error[data-error-for="username"]')  # moved beside it
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("user 'alice' already exists")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    assert in_viewport(page, error)
    assert error.get_attribute("id") in field.get_attribute("aria-describedby").split()


def test_a_page_error_without_a_field_is_focused_in_view(browser, console):
    page = browser.new_page()
    log_in(page, console.url, "root")
    page.goto(f"{console.url}/admin/audit?since=yesterday")

    error = page.locator(".form-error[role=alert]")
    expect(error).to_be_focused()
    assert in_viewport(page, error)
