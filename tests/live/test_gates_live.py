"""Manual gates against a real console process, real OpenSSH servers and a real
database: promote and abort through both doors (REST and Socket.IO), refusals that
change nothing, and a paused job that survives a console killed with SIGKILL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from models import AuditEntry, JobEvent
from tests.conftest import write_inventory
from tests.support.live_server import DEFAULT_PASSWORD
from tests.support.waiting import wait_until

# `make test` runs these again under gevent, and again on PostgreSQL
pytestmark = [pytest.mark.asyncmode, pytest.mark.postgres]
USERS = [("alice", DEFAULT_PASSWORD, "operator"), ("vera", DEFAULT_PASSWORD, "viewer")]


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, users=USERS)


class Operator:
    """One user's HTTP session and socket on the console."""

    def __init__(self, console, username: str = "alice") -> None:
        self.url = console.url
        self.http = console.login(username)
        self.socket = console.socket(self.http)

    def job(self, job_id: int) -> dict:
        response = self.http.get(f"{self.url}/api/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text[:300]
        return response.json()["job"]

    def post(self, path: str) -> tuple[int, dict]:
        response = self.http.post(f"{self.url}{path}", timeout=10)
        return response.status_code, response.json()

    def close(self) -> None:
        self.socket.disconnect()


def paused_rollout(alice: Operator, servers: list[str]) -> int:
    ack = alice.socket.call("job:start", {
        "runbook": "basic", "params": {"message": "gate"}, "servers": servers,
        "strategy": {"batches": [1], "gate": "manual"}}, timeout=10)
    assert ack["ok"], ack
    wait_until(lambda: alice.job(ack["job_id"])["status"] == "paused", 60, "paused")
    return ack["job_id"]


def events_of(url: str, job_id: int) -> list[dict]:
    engine = create_engine(url)
    with Session(engine) as session:
        events = [row.to_dict() for row in session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))]
    engine.dispose()
    return events


def audit_of(url: str) -> list[tuple[str, str, str]]:
    engine = create_engine(url)
    with Session(engine) as session:
        rows = [(e.username, e.action, e.target) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action.in_(("job.promote", "job.abort")))
            .order_by(AuditEntry.id))]
    engine.dispose()
    return rows


def test_a_paused_job_survives_a_killed_console_and_is_promoted_after_it(console,
                                                                         sshd_fleet):
    names = [host.name for host in sshd_fleet.hosts[:3]]
    alice = Operator(console)
    job_id = paused_rollout(alice, names)
    assert [h["status"] for h in alice.job(job_id)["hosts"]] == \
        ["succeeded", "pending", "pending"]
    alice.close()

    console.kill9()
    console.start()
    alice = Operator(console)
    url = console.env["DATABASE_URL"]
    wait_until(lambda: any(e["type"] == "job_recovered" for e in events_of(url, job_id)),
               60, "the job resumed")
    assert alice.job(job_id)["status"] == "paused"
    status, answer = alice.post(f"/api/jobs/{job_id}/promote")
    job = wait_until(lambda: (j := alice.job(job_id))["status"] not in ("running", "paused")
                     and j, 60, "the promoted job to finish")

    events = events_of(url, job_id)
    assert (status, answer) == (200, {"ok": True, "job_id": job_id, "status": "paused",
                                      "message": f"promoting job #{job_id}"})
    assert (job["status"], [h["status"] for h in job["hosts"]]) == \
        ("succeeded", ["succeeded"] * 3)
    assert len([e for e in events if e["type"] == "job_paused"]) == 1
    assert [e["data"] for e in events if e["type"] == "job_resumed"] == \
        [{"by": "alice", "batch": 1}]
    assert audit_of(url) == [("alice", "job.promote", f"job #{job_id}")]
    alice.close()


def test_abort_over_the_socket_skips_the_rest_and_refusals_change_nothing(console,
                                                                          sshd_fleet):
    names = [host.name for host in sshd_fleet.hosts[3:6]]
    alice, vera = Operator(console), Operator(console, "vera")
    job_id = paused_rollout(alice, names)

    refusals = {
        "viewer over REST": vera.post(f"/api/jobs/{job_id}/promote"),
        "viewer over the socket": vera.socket.call("job:abort", {"job_id": job_id},
                                                   timeout=10),
        "unknown job": alice.post("/api/jobs/99999/promote"),
        "not a job id": alice.socket.call("job:promote", {"job_id": "x"}, timeout=10),
    }
    assert alice.job(job_id)["status"] == "paused", "refusals changed nothing"
    ack = alice.socket.call("job:abort", {"job_id": job_id}, timeout=10)
    job = wait_until(lambda: (j := alice.job(job_id))["status"] not in ("running", "paused")
                     and j, 60, "the aborted job to end")
    too_late = alice.post(f"/api/jobs/{job_id}/promote")

    assert refusals["viewer over REST"][0] == 403
    assert refusals["viewer over REST"][1]["error"]["message"].startswith(
        "viewers can't promote jobs")
    assert refusals["viewer over the socket"]["error"]["code"] == "forbidden"
    assert refusals["unknown job"][0] == 404
    assert refusals["not a job id"]["error"]["field"] == "job_id"
    assert ack == {"ok": True, "job_id": job_id, "status": "paused",
                   "message": f"aborting job #{job_id}"}
    assert (job["status"], [h["status"] for h in job["hosts"]]) == \
        ("cancelled", ["succeeded", "skipped", "skipped"])
    assert job["hosts"][1]["reason"] == "not started: aborted at the gate by alice"
    assert too_late[0] == 400
    assert too_late[1]["error"] == {"code": "invalid", "field": "job_id", "message":
                                    f"job #{job_id} is not waiting at a gate (it is "
                                    "cancelled)"}
    assert audit_of(console.env["DATABASE_URL"]) == [("alice", "job.abort", f"job #{job_id}")]
    alice.close()
    vera.close()
