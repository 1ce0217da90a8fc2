"""The jobs:waiting broadcast (issue #32, item 10) against a real console process, real
OpenSSH servers and a real python-socketio client: a socket that watches no job (a
viewer's, on any page) hears that a rollout waits at its gate, and that it no longer
does once promoted, or once the job ends."""

from __future__ import annotations

import pytest

from tests.conftest import write_inventory
from tests.support.live_server import DEFAULT_PASSWORD
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.asyncmode, pytest.mark.postgres]
USERS = [("alice", DEFAULT_PASSWORD, "operator"), ("vera", DEFAULT_PASSWORD, "viewer")]


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, users=USERS)


class Listener:
    """vera's socket, subscribed to nothing: it keeps every jobs:waiting it hears."""

    def __init__(self, console) -> None:
        self.heard: list[dict] = []
        self.http = console.login("vera")
        self.socket = console.socket(self.http)
        self.socket.on("jobs:waiting", self.heard.append)

    def last(self) -> dict | None:
        return self.heard[-1] if self.heard else None

    def heard_count(self, count: int, after: int = 0) -> dict:
        return wait_until(lambda: next((m for m in self.heard[after:]
                                        if m["count"] == count), None),
                          60, f"jobs:waiting with count {count}")


def gated_job(http, url: str, servers: list[str]) -> int:
    answer = http.post(f"{url}/api/jobs", timeout=30, json={
        "runbook": "basic", "params": {"message": "gate"}, "servers": servers,
        "strategy": {"batches": [1], "gate": "manual"}})
    assert answer.status_code == 201, answer.text
    return answer.json()["job_id"]


def status_of(http, url: str, job_id: int) -> str:
    return http.get(f"{url}/api/jobs/{job_id}", timeout=10).json()["job"]["status"]


def test_the_broadcast_arrives_at_the_gate_and_clears_on_promote(console, sshd_fleet):
    vera = Listener(console)
    alice = console.login("alice")
    names = [host.name for host in sshd_fleet.hosts[:3]]

    job_id = gated_job(alice, console.url, names)
    waiting = vera.heard_count(1)
    seen = len(vera.heard)
    promoted = alice.post(f"{console.url}/api/jobs/{job_id}/promote", timeout=10)
    cleared = vera.heard_count(0, after=seen)
    wait_until(lambda: status_of(alice, console.url, job_id) == "succeeded", 60, "the end")
    api = vera.http.get(f"{console.url}/api/jobs/waiting", timeout=10).json()

    assert waiting["jobs"][0]["job_id"] == job_id
    assert waiting["jobs"][0]["waiting"] == "gate"
    assert waiting["jobs"][0]["gate"]["next_servers"] == names[1:]
    assert waiting["jobs"][0]["words"] == \
        "paused after the canary (1 server); promoting starts batch 2 (2 servers)"
    assert "for_you" not in waiting  # the same broadcast for all: each page knows its role
    assert promoted.status_code == 200
    assert cleared == {"count": 0, "jobs": []}
    assert vera.last() == {"count": 0, "jobs": []}
    assert api == {"count": 0, "jobs": [], "for_you": False}
    vera.socket.disconnect()


def test_the_broadcast_clears_when_a_waiting_job_ends(console, sshd_fleet):
    vera = Listener(console)
    alice = console.login("alice")
    names = [host.name for host in sshd_fleet.hosts[3:5]]

    job_id = gated_job(alice, console.url, names)
    vera.heard_count(1)
    seen = len(vera.heard)
    cancelled = alice.post(f"{console.url}/api/jobs/{job_id}/cancel", timeout=10)
    cleared = vera.heard_count(0, after=seen)
    wait_until(lambda: status_of(alice, console.url, job_id) == "cancelled", 60, "the end")

    assert cancelled.status_code == 200
    assert cleared == {"count": 0, "jobs": []}
    vera.socket.disconnect()
