"""Issue 32, item 5: a rollback job reads as a rollback everywhere: titled "Roll back
(<runbook>)", each server's builds before and after (1.0.8 → 1.0.7), only the steps it
ran, and no empty parameters; in the history rows, on the job page, in the API and in
the CLI (``patchbay jobs``, ``patchbay show``). A real console over real OpenSSH servers."""

from __future__ import annotations

import html
import re

import pytest

from tests.support.console_world import finished_job, start_console, start_job
from tests.web.test_cli import cli_env, flask_command, patchbay
from tests.web.test_openapi import answer_problems

MOVES = "1.0.8 → 1.0.7 (h01); 1.0.9 → 1.0.5 (h03)"


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    return start_console(live_server_factory, sshd_fleet, tmp_path)


def rolled_back(console, http) -> tuple[int, int]:
    """h01 on 1.0.7 then 1.0.8, h03 on 1.0.5 then 1.0.9, both rolled back in one job:
    (the last update's id, the rollback's)."""
    for version, servers in (("1.0.7", ["h01"]), ("1.0.5", ["h03"]), ("1.0.8", ["h01"]),
                             ("1.0.9", ["h03"])):
        update = start_job(console, http, {"runbook": "versioned", "servers": servers,
                                           "params": {"version": version}})
        assert finished_job(console, http, update)["status"] == "succeeded"
    answer = http.post(f"{console.url}/api/servers/rollback", timeout=30,
                       json={"servers": ["h01", "h03"]})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    assert finished_job(console, http, job_id)["status"] == "succeeded"
    return update, job_id


def page_text(markup: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup))).strip()


def job_row(markup: str, job_id: int) -> str:
    return re.search(rf'<tr data-job-id="{job_id}".*?</tr>', markup, re.S).group(0)


def test_a_rollback_job_reads_as_a_rollback_in_the_history_the_page_and_the_api(console):
    http = console.login()
    update, job_id = rolled_back(console, http)

    history = http.get(f"{console.url}/jobs", timeout=30).text
    row = page_text(job_row(history, job_id))
    assert f"#{job_id} Roll back (versioned) {MOVES}" in row
    assert "version=" not in row and "fail_on=none" in row  # the empty one left out
    assert "version=1.0.9" in page_text(job_row(history, update))  # an update: as before
    dashboard = page_text(job_row(http.get(f"{console.url}/", timeout=30).text, job_id))
    assert f"Roll back (versioned) {MOVES}" in dashboard

    page = http.get(f"{console.url}/jobs/{job_id}", timeout=30).text
    assert f"<title>Job #{job_id} · Roll back (versioned)" in page
    assert re.search(rf"<h1>Job #{job_id} .*?Roll back \(versioned\)</span></h1>", page)
    assert page_text(re.search(r'<dd id="job-builds">.*?</dd>', page).group(0)) == MOVES
    steps = re.search(r'<dd id="job-steps">(.*?)</dd>', page, re.S).group(1)
    assert re.findall(r'<span class="step-chip">([^<]*)</span>', steps) == ["roll back"]
    params = page_text(re.search(r'<dd class="params">.*?</dd>', page, re.S).group(0))
    assert params == "fail_on=none nap=0"

    job = http.get(f"{console.url}/api/jobs/{job_id}", timeout=30).json()["job"]
    assert (job["title"], job["builds_words"]) == ("Roll back (versioned)", MOVES)
    assert job["builds"] == [{"from": "1.0.8", "to": "1.0.7", "servers": ["h01"]},
                             {"from": "1.0.9", "to": "1.0.5", "servers": ["h03"]}]
    assert [(h["name"], h["from_version"], h["to_version"]) for h in job["hosts"]] == [
        ("h01", "1.0.8", "1.0.7"), ("h03", "1.0.9", "1.0.5")]
    listed = http.get(f"{console.url}/api/jobs", timeout=30).json()
    assert [(j["title"], j["builds_words"]) for j in listed["jobs"][:2]] == [
        ("Roll back (versioned)", MOVES), ("versioned", "")]
    document = http.get(f"{console.url}/api/openapi.json", timeout=30).json()
    assert answer_problems(document, "/api/jobs/{job_id}", "get", 200, {"job": job}) == []
    assert answer_problems(document, "/api/jobs", "get", 200, listed) == []


def test_the_cli_lists_and_shows_a_rollback_with_each_server_s_builds(console, tmp_path):
    http = console.login()
    _, job_id = rolled_back(console, http)
    made = flask_command(console, "create-token", "alice", "--name", "ci")
    assert made.returncode == 0, made.stderr
    env = cli_env(tmp_path, PATCHBAY_URL=console.url,
                  PATCHBAY_TOKEN=made.stdout.strip().splitlines()[-1])

    listed = patchbay("jobs", env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines()
                if line.startswith(f"{job_id} "))
    assert re.match(rf"{job_id} +succeeded +Roll back \(versioned\) +2 ", line), line
    assert line.endswith(f"{MOVES} fail_on=none nap=0"), line
    assert "version=" not in line

    shown = patchbay("show", str(job_id), env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"job #{job_id} Roll back (versioned) (rollback): succeeded"
    assert f"  builds: {MOVES}" in lines
    assert "  params: fail_on=none nap=0" in lines
    assert "version=" not in shown.stdout
    servers = {line.split()[0]: line for line in lines if line.startswith("h0")}
    assert re.match(r"h01 +1 +succeeded +1\.0\.8 → 1\.0\.7$", servers["h01"]), servers
    assert re.match(r"h03 +1 +succeeded +1\.0\.9 → 1\.0\.5$", servers["h03"]), servers
    assert re.search(r"^SERVER +BATCH +STATUS +BUILD +STEP", shown.stdout, re.M)
