"""The console's own log, read from a real console process after real jobs on real sshd
servers: one line when each job starts and one when it ends (id, runbook, user,
servers, result, duration) through ``patchbay.jobs``; the SSH library's per-connection
lines only when the console logs at DEBUG; no parameter value in it."""

from __future__ import annotations

import re

from tests.conftest import PASSWORD, write_inventory
from tests.support.waiting import wait_until

USERS = [("alice", PASSWORD, "operator")]
SENTINEL = "do-not-log-me-7f3a"  # a parameter value: it must never reach the log
SSH_CHATTER = ("Connected (version", "Authentication (publickey) successful")


def run_jobs(server) -> tuple[int, int]:
    """One job that succeeds on h01 and h02, one that fails on h03: both ended."""
    http = server.login("alice")
    ok = http.post(f"{server.url}/api/jobs", timeout=30, json={
        "runbook": "basic", "params": {"message": SENTINEL}, "servers": ["h01", "h02"]})
    bad = http.post(f"{server.url}/api/jobs", timeout=30, json={
        "runbook": "basic", "params": {"message": "hi", "fail_on": "h03"},
        "servers": ["h03"]})
    assert (ok.status_code, bad.status_code) == (201, 201), (ok.text, bad.text)
    ids = ok.json()["job_id"], bad.json()["job_id"]
    for job_id in ids:
        wait_until(lambda job_id=job_id: f"job #{job_id} finished: " in server.log(),
                   timeout=90, what=f"job #{job_id}'s last line in the console's log")
    return ids


def line_of(log: str, pattern: str) -> str:
    found = [line for line in log.splitlines() if re.search(pattern, line)]
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_each_job_logs_its_start_and_end_and_no_ssh_chatter(live_server_factory,
                                                           sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    server = live_server_factory(inventory=inventory, users=USERS)

    ok, bad = run_jobs(server)
    log = server.log()

    started = line_of(log, rf"job #{ok} started: ")
    assert re.search(rf" INFO patchbay\.jobs: job #{ok} started: runbook=basic "
                     r"kind=runbook user=alice servers=2 \(h01,h02\)$", started), started
    ended = line_of(log, rf"job #{ok} finished: ")
    assert re.search(rf" INFO patchbay\.jobs: job #{ok} finished: result=succeeded "
                     r"duration=\d+(\.\d+)?s runbook=basic kind=runbook user=alice "
                     r"servers=2 \(h01,h02\) \(succeeded=2\)$", ended), ended
    assert re.search(rf"job #{bad} started: runbook=basic kind=runbook user=alice "
                     r"servers=1 \(h03\)$", line_of(log, rf"job #{bad} started: "))
    assert re.search(rf"job #{bad} finished: result=failed duration=\S+s .* "
                     r"\(failed=1\)$", line_of(log, rf"job #{bad} finished: "))
    assert [chatter for chatter in SSH_CHATTER if chatter in log] == []
    assert "paramiko" not in log
    assert SENTINEL not in log


def test_at_debug_the_ssh_library_speaks_again(live_server_factory, sshd_fleet, tmp_path):
    """The same jobs with PATCHBAY_LOG_LEVEL=DEBUG: the chatter hidden above is there
    (so its absence above is the level's doing), and the job lines too."""
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    server = live_server_factory(inventory=inventory, users=USERS,
                                 env={"PATCHBAY_LOG_LEVEL": "DEBUG"})

    ok, _ = run_jobs(server)
    log = server.log()

    assert all(chatter in log for chatter in SSH_CHATTER), log[-3000:]
    assert line_of(log, rf"job #{ok} finished: result=succeeded ")
    assert SENTINEL not in log
