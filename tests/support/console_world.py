"""Shared parts of the console's browser tests: a console over the sshd fleet with the
test runbooks plus a flood runbook, logging in, and reading logs from the page and
from the event log."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, PROJECT, write_inventory
from tests.support.live_server import LiveServer
from tests.support.waiting import wait_until

LONG = 60_000  # ms: deadline for a whole job on a loaded CI machine
USERS = [("alice", PASSWORD, "operator"), ("bob", PASSWORD, "operator")]
EIGHT_SERVERS = [f"h0{n}" for n in range(1, 9)]  # the whole sshd fleet, by name
# The page tests' two widths: a laptop and a phone.
VIEWPORTS = [{"width": 1440, "height": 900}, {"width": 390, "height": 844}]

# Numbered lines in bursts: `lines` per server, in `bursts` bursts 0.2 s apart.
FLOOD = """\
name: flood
description: Prints numbered lines in bursts; for the huge-output tests.
params:
  lines:
    type: integer
    pattern: '^[0-9]{1,7}$'
  bursts:
    type: integer
    pattern: '^[0-9]{1,4}$'
steps:
  - name: flood
    run: |
      n={{ params.lines }}; b={{ params.bursts }}; h={{ host.name }}; per=$((n / b)); i=0
      while [ $i -lt $b ]; do
        seq $((i * per + 1)) $(((i + 1) * per)) | sed "s/^/$h line /"
        i=$((i + 1)); sleep 0.2
      done
"""


def runbook_dir(tmp_path: Path) -> Path:
    """The test runbooks plus ``flood``."""
    directory = tmp_path / "runbooks"
    directory.mkdir()
    for book in (PROJECT / "tests" / "runbooks").glob("*.yml"):
        shutil.copy(book, directory)
    (directory / "flood.yml").write_text(FLOOD)
    return directory


def start_console(factory, sshd_fleet, tmp_path: Path, extra: list[dict] | None = None,
                  env: dict[str, str] | None = None) -> LiveServer:
    inventory = write_inventory(tmp_path / "inventory.yml",
                                sshd_fleet.inventory_entries() + (extra or []))
    return factory(inventory=inventory, runbook_dir=runbook_dir(tmp_path), users=USERS,
                   env=env)


def log_in(page: Page, url: str, username: str = "alice") -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.stack [type=submit]")
    expect(page).to_have_url(f"{url}/")
    page.wait_for_load_state()  # the dashboard's scripts have run


def run_from_dashboard(page: Page, runbook: str, params: dict[str, str]) -> int:
    """Start ``runbook`` on every server from the dashboard form; returns the job id."""
    page.select_option("#runbook", runbook)
    for name, value in params.items():
        page.fill(f"#param-{name}", value)
    page.check("#target-all")
    page.click("#run-button")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def start_job(server: LiveServer, http, payload: dict) -> int:
    """Start a job over the JSON API; its id."""
    answer = http.post(f"{server.url}/api/jobs", json=payload, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()["job_id"]


def job_of(server: LiveServer, http, job_id: int) -> dict:
    return http.get(f"{server.url}/api/jobs/{job_id}", timeout=30).json()["job"]


def finished_job(server: LiveServer, http, job_id: int) -> dict:
    """The job once it is no longer running (a deadline of a minute)."""
    return wait_until(lambda: (job := job_of(server, http, job_id))["status"]
                      not in ("running", "paused") and job,
                      timeout=60, what=f"job {job_id} to finish")


def paused_rollout(server: LiveServer, http, servers: list[str], message: str = "gated") -> int:
    """A job of `basic` with a canary of one and a manual gate, once it waits there."""
    answer = http.post(f"{server.url}/api/jobs", timeout=30, json={
        "runbook": "basic", "params": {"message": message}, "servers": servers,
        "strategy": {"batches": [1], "gate": "manual"}})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    wait_until(lambda: job_of(server, http, job_id)["status"] == "paused", 60,
               f"job {job_id} to pause at the gate")
    return job_id


def stored_events(server: LiveServer, http, job_id: int) -> list[dict]:
    """The whole event log of a job, page by page from the API."""
    events: list[dict] = []
    while True:
        page = http.get(f"{server.url}/api/jobs/{job_id}/events",
                        params={"after_seq": events[-1]["seq"] if events else 0,
                                "limit": 5000}, timeout=30).json()
        events.extend(page["events"])
        if not page["more"]:  # a page may also end early at PATCHBAY_MAX_PAGE_BYTES
            return events


def logs_from_events(events: list[dict]) -> dict[str, list[str]]:
    logs: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "output":
            logs.setdefault(event["host"], []).extend(event["data"]["lines"])
    return logs


def rendered_logs(page: Page, hosts: list[str]) -> dict[str, list[str]]:
    """Output lines as the page shows them (a small job renders every row)."""
    expect(page.locator("body")).to_have_attribute("data-pending-rows", "0")
    return {name: page.locator(f'.host-log[data-host="{name}"] .line').all_text_contents()
            for name in hosts}



def query_db(server: LiveServer, sql: str, *args) -> list[tuple]:
    """Read the console's database directly (SQLite or PostgreSQL), as the ground truth.

    ``?`` placeholders; rows come back as stored: JSON as its text, booleans as
    0/1 on SQLite (True/False, equal to those, on PostgreSQL)."""
    from sqlalchemy import create_engine, event, text

    url = server.env["DATABASE_URL"]
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _json_as_text)
    names = iter(range(len(args)))
    statement = text(re.sub(r"\?", lambda _: f":p{next(names)}", sql))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                statement, {f"p{index}": value for index, value in enumerate(args)})]
    finally:
        engine.dispose()


def _json_as_text(dbapi_connection, _record) -> None:
    """psycopg parses json columns; SQLite hands back their text, which tests compare."""
    from psycopg.types.string import TextLoader

    for name in ("json", "jsonb"):
        dbapi_connection.adapters.register_loader(name, TextLoader)
