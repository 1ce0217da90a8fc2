"""The Socket.IO contract against a real server process, with python-socketio clients."""

from __future__ import annotations

import re
import signal
import threading

import pytest
import socketio

from tests.conftest import PROJECT, write_inventory
from tests.support.live_server import handshake
from tests.support.live_watch import ResumingWatcher
from tests.support.waiting import wait_until

# `make test` runs these again under gevent, and again on PostgreSQL
pytestmark = [pytest.mark.asyncmode, pytest.mark.postgres]



class EventCollector:
    """Keeps every ``job:events`` event a client receives (duplicates included)."""

    def __init__(self, client: socketio.Client) -> None:
        self.events: list[dict] = []
        self.lock = threading.Lock()
        client.on("job:events", self.take)

    def take(self, payload: dict) -> None:
        with self.lock:
            self.events.extend(payload["events"])

    def seqs(self) -> set[int]:
        with self.lock:
            return {e["seq"] for e in self.events}

    def contiguous(self) -> int:
        seqs, top = self.seqs(), 0
        while top + 1 in seqs:
            top += 1
        return top

    def finished(self) -> bool:
        with self.lock:
            return any(e["type"] == "job_finished" for e in self.events)


@pytest.fixture
def fleet_server(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory)


def test_resume_after_disconnect_gives_exactly_the_database_log(fleet_server, sshd_fleet):
    http = fleet_server.login()
    first = fleet_server.socket(http)
    seen_first = EventCollector(first)
    ack = first.call("job:start", {"runbook": "ticker", "params": {"ticks": "40"},
                                   "tags": ["test"]}, timeout=10)
    assert ack["ok"], ack
    job_id = ack["job_id"]
    wait_until(lambda: seen_first.contiguous() >= 12, what="first events")
    first.disconnect()
    cut = seen_first.contiguous()
    wait_until(lambda: http.get(f"{fleet_server.url}/api/jobs/{job_id}").json()
               ["job"]["last_seq"] > cut + 10, what="job progressed while disconnected")

    # Over long-polling, like a browser behind a proxy that blocks websockets; it
    # reconnects and resubscribes after a drop as the console's page does.
    second = ResumingWatcher(fleet_server.url, http, job_id, after_seq=cut,
                             transports=["polling"])
    wait_until(second.finished, timeout=60, what=f"job_finished ({second.story()})")
    second.close()

    assert_watcher_holds_the_stored_log(fleet_server, http, second, cut, seen_first)


def test_a_watcher_dropped_by_a_stalled_console_reconnects_and_gets_the_whole_log(
        fleet_server, sshd_fleet):
    """The cause of the lossless-resume test's failures, made to happen: the console
    stalls (here: stopped) while a long-polling client's POST waits, the client's
    writer gives up after its request timeout and the client drops. A client that
    reconnects and resubscribes from its contiguous seq still gets every event."""
    http = fleet_server.login()
    starter = fleet_server.socket(http)
    ack = starter.call("job:start", {"runbook": "ticker", "params": {"ticks": "40"},
                                     "tags": ["test"]}, timeout=10)
    assert ack["ok"], ack
    starter.disconnect()
    watcher = ResumingWatcher(fleet_server.url, http, ack["job_id"], transports=["polling"])
    wait_until(lambda: watcher.contiguous() >= 5, what=f"first events ({watcher.story()})")

    fleet_server.process.send_signal(signal.SIGSTOP)
    try:
        # A subscribe again, as a page does on focus: a POST that the stall holds.
        watcher.client.emit("job:subscribe", {"job_id": watcher.job_id,
                                              "after_seq": watcher.contiguous()})
        # The client's writer ends when that POST times out (request_timeout): the drop.
        wait_until(lambda: watcher.client.eio.write_loop_task is None, timeout=30,
                   what="the client's writer to give up on the stalled console")
    finally:
        fleet_server.process.send_signal(signal.SIGCONT)
    wait_until(lambda: watcher.drops, what=f"the drop ({watcher.story()})")
    wait_until(watcher.finished, timeout=60, what=f"job_finished ({watcher.story()})")
    watcher.close()

    assert len(watcher.acks) >= 2, watcher.story()  # subscribed again after the drop
    assert_watcher_holds_the_stored_log(fleet_server, http, watcher, 0)


def assert_watcher_holds_the_stored_log(server, http, watcher: ResumingWatcher, cut: int,
                                        before: EventCollector | None = None) -> None:
    """The stored log has no gap, ended well, and is exactly what the client holds
    (events up to ``cut`` from ``before``, the rest from ``watcher``) keyed by seq."""
    stored = http.get(f"{server.url}/api/jobs/{watcher.job_id}/events",
                      params={"after_seq": 0, "limit": 5000}).json()["events"]
    union = {e["seq"]: e for e in (before.events if before else []) if e["seq"] <= cut}
    for seq, event in watcher.by_seq().items():
        union.setdefault(seq, event)
    assert all(ack["ok"] and ack["job"]["id"] == watcher.job_id for ack in watcher.acks)
    assert min(watcher.seqs()) == cut + 1, watcher.story()
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    assert [union[seq] for seq in sorted(union)] == stored, watcher.story()
    failures = [e["data"] for e in stored
                if e["type"] == "host_finished" and e["data"]["status"] != "succeeded"]
    assert (stored[-1]["data"]["status"], failures) == ("succeeded", [])


def test_anonymous_socket_is_refused(fleet_server):
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(fleet_server.url, transports=["websocket"], wait_timeout=5)


BAD_STARTS = [
    ("not an object", "invalid", None),
    ({"params": {"version": "1.4.2"}, "servers": ["h01"]}, "invalid", "runbook"),
    ({"runbook": 7, "params": {"version": "1.4.2"}, "servers": ["h01"]}, "invalid", "runbook"),
    ({"runbook": "game-update", "params": ["1.4.2"], "servers": ["h01"]}, "invalid", "params"),
    ({"runbook": "game-update", "params": {"version": "1.4.2"}, "servers": "h01"},
     "invalid", "servers"),
    ({"runbook": "no-such-book", "params": {"version": "1.4.2"}, "servers": ["h01"]},
     "unknown_runbook", "runbook"),
    ({"runbook": "game-update", "params": {"version": "1.4"}, "servers": ["h01"]},
     "invalid", "params.version"),
    ({"runbook": "game-update", "params": {"version": "1.4.2; rm -rf /"}, "servers": ["h01"]},
     "invalid", "params.version"),
    ({"runbook": "game-update", "params": {}, "servers": ["h01"]}, "invalid", "params.version"),
    ({"runbook": "game-update", "params": {"version": "1.4.2"}, "servers": ["nope"]},
     "unknown_server", "servers"),
    ({"runbook": "game-update", "params": {"version": "1.4.2"}}, "invalid", "servers"),
    ({"runbook": "game-update", "params": {"version": "1.4.2"}, "servers": ["h01"],
      "surprise": 1}, "invalid", "surprise"),
    ({"runbook": "game-update", "params": {"version": "1.4.2"}, "servers": ["h01"],
      "strategy": {"parallel": 0}}, "invalid", "strategy.parallel"),
]


def test_malformed_job_start_gets_an_error_ack_and_creates_no_job(
        live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    server = live_server_factory(inventory=inventory, runbook_dir=PROJECT / "runbooks")
    http = server.login()
    client = server.socket(http)

    acks = [client.call("job:start", payload, timeout=10) for payload, _, _ in BAD_STARTS]

    client.disconnect()
    for ack, (payload, code, field) in zip(acks, BAD_STARTS, strict=True):
        assert ack["ok"] is False, payload
        assert (ack["error"]["code"], ack["error"]["field"]) == (code, field), ack
        assert ack["error"]["message"]
    assert http.get(f"{server.url}/api/jobs").json()["jobs"] == []


def test_killed_console_resumes_the_job_and_a_new_socket_gets_the_whole_log(
        fleet_server, sshd_fleet):
    http = fleet_server.login()
    client = fleet_server.socket(http)
    seen = EventCollector(client)
    ack = client.call("job:start", {"runbook": "ticker", "params": {"ticks": "60"},
                                    "servers": ["h01", "h02", "h03"]}, timeout=10)
    job_id = ack["job_id"]
    wait_until(lambda: sum(1 for e in list(seen.events) if e["type"] == "output") >= 6,
               what="output before the crash")
    client.disconnect()

    fleet_server.kill9()
    fleet_server.start()

    http = fleet_server.login()
    client = fleet_server.socket(http)
    seen_after = EventCollector(client)
    subscribed = client.call("job:subscribe", {"job_id": job_id, "after_seq": 0}, timeout=10)
    assert subscribed["ok"], subscribed
    wait_until(seen_after.finished, timeout=60, what="the resumed job to finish")
    client.disconnect()
    job = http.get(f"{fleet_server.url}/api/jobs/{job_id}").json()["job"]
    assert job["status"] == "succeeded"
    assert {h["status"] for h in job["hosts"]} == {"succeeded"}
    by_seq = {e["seq"]: e for e in seen_after.events}
    assert sorted(by_seq) == list(range(1, max(by_seq) + 1))
    assert {e["seq"] for e in seen.events} <= set(by_seq)
    assert any(e["type"] == "job_recovered" for e in by_seq.values())


def test_socket_from_a_foreign_origin_is_refused(fleet_server):
    http = fleet_server.login()
    client = socketio.Client(http_session=http, reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(fleet_server.url, transports=["websocket"], wait_timeout=5,
                       headers={"Origin": "http://evil.example"}, auth=handshake(http))
    same_origin = fleet_server.socket(http)
    assert same_origin.connected
    same_origin.disconnect()


def test_a_job_can_be_cancelled_from_another_console_process(
        live_server_factory, sshd_fleet, tmp_path):
    from tests.support.live_server import LiveServer
    from tests.support.sshd_fleet import free_port

    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    first = live_server_factory(inventory=inventory)
    port = free_port()  # a second console process on the same database
    second = LiveServer(first.directory, port, {**first.env, "PATCHBAY_PORT": str(port)})
    second.log_path = first.directory / "second.log"
    second.start()
    try:
        http_first = first.login()
        client = first.socket(http_first)
        ack = client.call("job:start", {"runbook": "sleepy", "params": {"seconds": "307"},
                                        "servers": ["h06"]}, timeout=10)
        client.disconnect()
        http_second = second.login()

        cancel = http_second.post(f"{second.url}/api/jobs/{ack['job_id']}/cancel").json()
        wait_until(lambda: http_second.get(f"{second.url}/api/jobs/{ack['job_id']}").json()
                   ["job"]["status"] != "running", what="job ended")
    finally:
        second.stop()

    job = http_first.get(f"{first.url}/api/jobs/{ack['job_id']}").json()["job"]
    assert cancel["cancelled"] is True
    assert (job["status"], job["hosts"][0]["status"]) == ("cancelled", "cancelled")


def test_the_console_logs_why_each_socket_went(fleet_server):
    http = fleet_server.login()
    closed_by_client = fleet_server.socket(http)
    sid = closed_by_client.get_sid()
    closed_by_client.disconnect()
    # The client's DISCONNECT packet or its closing the websocket, whichever is first
    by_client = re.compile(rf"socket {sid} disconnected: (closed by the client|"
                           r"transport closed)")
    wait_until(lambda: by_client.search(fleet_server.log()),
               what=f"the client's own disconnect of {sid} in the log")

    dropped = fleet_server.socket(http)
    sid = dropped.get_sid()
    assert http.post(f"{fleet_server.url}/logout", allow_redirects=False).status_code == 302
    wait_until(lambda: f"socket {sid} disconnected: closed by the console"
               in fleet_server.log(), what=f"the logout's drop of socket {sid} in the log")
    assert f"dropping socket {sid}: its room login:" in fleet_server.log()
    assert "Traceback" not in fleet_server.log()
