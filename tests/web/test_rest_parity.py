"""REST and Socket.IO are two doors to the same actions: against a real server process
and real SSH servers, every action and every kind of bad payload sent through both gets
the same result and the same error code and field (REST with the fitting status), and
every REST answer matches ``/api/openapi.json``."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import PASSWORD, write_inventory
from tests.support.waiting import wait_until
from tests.web.test_openapi import answer_problems

# `make test` runs these again under gevent, and again on PostgreSQL
pytestmark = [pytest.mark.asyncmode, pytest.mark.postgres]

USERS = [("alice", PASSWORD, "operator"), ("vera", PASSWORD, "viewer")]
STATUS_OF = {"invalid": 400, "unknown_runbook": 400, "unknown_server": 400,
             "forbidden": 403, "not_found": 404, "server_busy": 409}
MISSING = 999_999

START = {"runbook": "basic", "params": {"message": "hi there"}, "servers": ["h01"]}
HOLD = {"runbook": "sleepy", "params": {"seconds": "300"}}
ADHOC = {"command": "echo hi", "servers": ["h01"]}


class Doors:
    """One user's two ways in: HTTP (requests) and Socket.IO (python-socketio)."""

    def __init__(self, server, username: str) -> None:
        self.url = server.url
        self.http = server.login(username)
        self.socket = server.socket(self.http)
        self.document = self.http.get(f"{self.url}/api/openapi.json", timeout=10).json()
        self.problems: list[str] = []  # REST answers that do not match the document

    def rest(self, action: str, argument: Any) -> tuple[int, dict]:
        method, template, body = REST[action](argument)
        path = template.replace("{job_id}", str(argument))
        response = self.http.request(method, f"{self.url}{path}", json=body, timeout=30)
        answer = response.json()
        self.problems += answer_problems(self.document, template, method,
                                         response.status_code, answer)
        return response.status_code, answer

    def emit(self, action: str, argument: Any) -> dict:
        event, payload = SOCKET[action](argument)
        return self.socket.call(event, payload, timeout=30)

    def both(self, action: str, argument: Any) -> tuple[tuple[int, dict], dict]:
        return self.rest(action, argument), self.emit(action, argument)

    def job(self, job_id: int) -> dict:
        response = self.http.get(f"{self.url}/api/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return response.json()["job"]

    def finished(self, *job_ids: int) -> list[dict]:
        return [wait_until(lambda job_id=job_id: (job := self.job(job_id))["status"]
                           != "running" and job, timeout=60, what=f"job #{job_id} ended")
                for job_id in job_ids]

    def close(self) -> None:
        self.socket.disconnect()


# action -> (method, path template, body) over HTTP; (event, payload) over Socket.IO
REST = {
    "start": lambda body: ("POST", "/api/jobs", body),
    "adhoc": lambda body: ("POST", "/api/jobs", body),
    "plan": lambda body: ("POST", "/api/jobs/plan", body),
    "cancel": lambda job_id: ("POST", "/api/jobs/{job_id}/cancel", None),
    "rerun": lambda job_id: ("POST", "/api/jobs/{job_id}/rerun", None),
    "read": lambda job_id: ("GET", "/api/jobs/{job_id}", None),
}
SOCKET = {
    "start": lambda body: ("job:start", body),
    "adhoc": lambda body: ("job:adhoc", body),
    "plan": lambda body: ("job:plan", body),
    "cancel": lambda job_id: ("job:cancel", {"job_id": job_id}),
    "rerun": lambda job_id: ("job:rerun", {"job_id": job_id}),
    "read": lambda job_id: ("job:subscribe", {"job_id": job_id, "after_seq": 0}),
}

# (what, action, argument, code, field, same message through both doors)
HELD = "held"  # stands for the id of the job holding h08
BAD_REQUESTS = [
    ("not an object", "start", "runbook=basic", "invalid", None, False),
    ("runbook of the wrong type", "start", {**START, "runbook": 7}, "invalid", "runbook",
     True),
    ("params not an object", "start", {**START, "params": ["hi"]}, "invalid", "params", True),
    ("servers not a list", "start", {**START, "servers": "h01"}, "invalid", "servers", True),
    ("unknown field", "start", {**START, "surprise": 1}, "invalid", "surprise", True),
    ("no runbook", "start", {"servers": ["h01"]}, "invalid", "runbook", False),
    ("unknown runbook", "start", {**START, "runbook": "no-such-book"}, "unknown_runbook",
     "runbook", True),
    ("parameter failing its pattern", "start", {**START, "params": {"message": "two\nlines"}},
     "invalid", "params.message", True),
    ("shell in an integer parameter", "start",
     {**HOLD, "params": {"seconds": "1; rm -rf /"}, "servers": ["h01"]}, "invalid",
     "params.seconds", True),
    ("missing parameter", "start", {**START, "params": {}}, "invalid", "params.message", True),
    ("unknown parameter", "start", {**START, "params": {"message": "hi", "x": "y"}},
     "invalid", "params.x", True),
    ("NUL in a parameter", "start", {**START, "params": {"message": "a\x00b"}}, "invalid",
     "params.message", True),
    ("unknown server", "start", {**START, "servers": ["nope"]}, "unknown_server", "servers",
     True),
    ("no servers", "start", {"runbook": "basic", "params": {"message": "hi"}}, "invalid",
     "servers", True),
    ("servers and tags", "start", {**START, "tags": ["odd"]}, "invalid", "servers", True),
    ("bad strategy", "start", {**START, "strategy": {"parallel": 0}}, "invalid",
     "strategy.parallel", True),
    ("busy server", "start", {**START, "servers": ["h08"]}, "server_busy", "servers", True),
    ("plan: unknown runbook", "plan", {**START, "runbook": "no-such-book"},
     "unknown_runbook", "runbook", True),
    ("plan: parameter failing its pattern", "plan",
     {**START, "params": {"message": "two\nlines"}}, "invalid", "params.message", True),
    ("plan: unknown server", "plan", {**START, "servers": ["nope"]}, "unknown_server",
     "servers", True),
    ("ad-hoc: empty command", "adhoc", {**ADHOC, "command": "  "}, "invalid", "command",
     True),
    ("ad-hoc: command of the wrong type", "adhoc", {**ADHOC, "command": 7}, "invalid",
     "command", True),
    ("ad-hoc: command too long", "adhoc", {**ADHOC, "command": "x" * 4097}, "invalid",
     "command", True),
    ("ad-hoc: params", "adhoc", {**ADHOC, "params": {}}, "invalid", "params", True),
    ("ad-hoc: unknown server", "adhoc", {**ADHOC, "servers": ["nope"]}, "unknown_server",
     "servers", True),
    ("ad-hoc: busy server", "adhoc", {**ADHOC, "servers": ["h08"]}, "server_busy",
     "servers", True),
    ("cancel: missing job", "cancel", MISSING, "not_found", "job_id", True),
    ("rerun: missing job", "rerun", MISSING, "not_found", "job_id", True),
    ("rerun: a running job", "rerun", HELD, "invalid", "job_id", True),
    ("read: missing job", "read", MISSING, "not_found", "job_id", True),
]
VIEWER_REFUSED = [("start", START), ("adhoc", ADHOC), ("plan", START), ("cancel", HELD),
                  ("rerun", HELD)]


@pytest.fixture
def server(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, users=USERS)


def error_of(rest: tuple[int, dict], ack: dict) -> tuple:
    """What a refusal looks like through each door, side by side."""
    status, body = rest
    return (status, body.get("ok"), body.get("error"), ack.get("ok"), ack.get("error"))


def test_bad_requests_get_the_same_error_through_both_doors_and_change_nothing(server):
    alice, vera = Doors(server, "alice"), Doors(server, "vera")
    held = alice.rest("start", {**HOLD, "servers": ["h08"]})[1]["job_id"]

    def argument(value: Any) -> Any:
        return held if value == HELD else value

    mismatches = []
    for what, action, value, code, field, same_message in BAD_REQUESTS:
        rest, ack = alice.both(action, argument(value))
        (status, body), wanted = rest, (STATUS_OF[code], code, field)
        got = (status, body["error"]["code"], body["error"]["field"])
        if (got, (ack["error"]["code"], ack["error"]["field"])) != (wanted, wanted[1:]) \
                or (body["ok"], ack["ok"]) != (False, False) \
                or (same_message and body["error"]["message"] != ack["error"]["message"]):
            mismatches.append((what, error_of(rest, ack)))
    for action, value in VIEWER_REFUSED:
        rest, ack = vera.both(action, argument(value))
        if (rest[0], rest[1]["error"]["code"], ack["error"]["code"]) != \
                (403, "forbidden", "forbidden"):
            mismatches.append((f"viewer: {action}", error_of(rest, ack)))
    jobs = alice.http.get(f"{alice.url}/api/jobs", timeout=10).json()["jobs"]
    alice.rest("cancel", held)
    alice.finished(held)
    alice.close()
    vera.close()

    assert mismatches == []
    assert [job["id"] for job in jobs] == [held]  # nothing else was started
    assert alice.problems + vera.problems == []


def test_every_action_gives_the_same_result_through_both_doors(server):
    alice, vera = Doors(server, "alice"), Doors(server, "vera")

    plan_rest, plan_ack = alice.both("plan", {**START, "params": {"message": "it's $HOME"},
                                              "servers": ["h01", "h02"]})
    (started_status, started), started_ack = (alice.rest("start", {**HOLD, "servers": ["h07"]}),
                                              alice.emit("start", {**HOLD, "servers": ["h08"]}))
    by_rest, by_socket = started["job_id"], started_ack["job_id"]
    cancelled = alice.rest("cancel", by_rest), alice.emit("cancel", by_socket)
    alice.finished(by_rest, by_socket)
    cancelled_again = alice.rest("cancel", by_rest), alice.emit("cancel", by_socket)
    read = alice.both("read", by_rest), vera.both("read", by_socket)
    rerun = alice.rest("rerun", by_rest), alice.emit("rerun", by_socket)
    reruns = rerun[0][1]["job_id"], rerun[1]["job_id"]
    for job_id in reruns:
        alice.rest("cancel", job_id)
    adhoc = (alice.rest("adhoc", {"command": "printf '%s\\n' \"$((6 * 7))\"",
                                  "servers": ["h05"]}),
             alice.emit("adhoc", {"command": "printf '%s\\n' \"$((6 * 7))\"",
                                  "servers": ["h06"]}))
    adhoc_jobs = alice.finished(adhoc[0][1]["job_id"], adhoc[1]["job_id"])
    started_jobs, rerun_jobs = alice.finished(by_rest, by_socket), alice.finished(*reruns)
    alice.close()
    vera.close()

    assert plan_rest == (200, plan_ack)
    assert plan_ack["plan"]["hosts"][0]["steps"][0]["command"] == \
        "echo \"hello from \"h01\": \" 'it'\"'\"'s $HOME'\necho \"a warning on stderr\" >&2\n"
    assert (started_status, started["ok"], started_ack["ok"]) == (201, True, True)
    assert same_job(started_jobs[0]) == same_job(started_jobs[1])
    assert [(servers_of(job), job["status"]) for job in started_jobs] == \
        [(["h07"], "cancelled"), (["h08"], "cancelled")]
    assert cancelled[0][0] == cancelled_again[0][0] == 200
    assert without_ids(cancelled[0][1]) == without_ids(cancelled[1]) == {
        "ok": True, "cancelled": True, "status": "running", "message": "cancelling job #N"}
    assert without_ids(cancelled_again[0][1]) == without_ids(cancelled_again[1]) == {
        "ok": True, "cancelled": False, "status": "cancelled",
        "message": "job #N already finished (cancelled)"}
    for (status, body), ack in read:
        assert (status, body["job"]) == (200, ack["job"]) and ack["ok"]
    assert (rerun[0][0], rerun[0][1]["ok"], rerun[1]["ok"]) == (201, True, True)
    assert [(job["rerun_of"], job["runbook"], job["params"]) for job in rerun_jobs] == [
        (by_rest, "sleepy", {"seconds": "300"}), (by_socket, "sleepy", {"seconds": "300"})]
    assert (adhoc[0][0], adhoc[1]["ok"]) == (201, True)
    assert [(job["kind"], job["runbook"], job["params"], job["status"]) for job in adhoc_jobs] \
        == [("adhoc", "adhoc", {"command": "printf '%s\\n' \"$((6 * 7))\""}, "succeeded")] * 2
    assert alice.problems + vera.problems == []


def same_job(job: dict) -> tuple:
    """What two jobs started the same way (on different servers) share."""
    return job["runbook"], job["kind"], job["params"], job["strategy"], job["created_by"]


def servers_of(job: dict) -> list[str]:
    return [host["name"] for host in job["hosts"]]


def without_ids(answer: dict) -> dict:
    """An answer with the job numbers in its message replaced by N."""
    return {**answer, "message": re.sub(r"#\d+", "#N", answer["message"])}
