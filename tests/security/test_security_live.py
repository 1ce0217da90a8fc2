"""Hostile input against a real server process: malformed and oversized socket
payloads, a user disabled while connected, and secrets that must never leak."""

from __future__ import annotations

import re

import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.auth.permissions import SOCKET_RULES
from tests.conftest import PASSWORD, write_inventory
from tests.support.live_server import handshake
from tests.support.waiting import wait_until

# `make test` runs these again under gevent, and again on PostgreSQL
pytestmark = [pytest.mark.asyncmode, pytest.mark.postgres]

USERS = [("alice", PASSWORD, "operator"), ("root", PASSWORD, "admin")]



@pytest.fixture
def server(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory, users=USERS)


def run_basic_job(server, http) -> dict:
    client = server.socket(http)
    done = []
    client.on("job:events", lambda payload: done.extend(
        e for e in payload["events"] if e["type"] == "job_finished"))
    ack = client.call("job:start", {"runbook": "basic", "params": {"message": "still here"},
                                    "servers": ["h01", "h02"]}, timeout=10)
    assert ack["ok"], ack
    wait_until(lambda: done, what="job_finished")
    client.disconnect()
    return done[0]["data"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["runbook", "params", "servers", "tags", "strategy",
                                       "job_id", "after_seq", "command", "x"])
                      | st.text(max_size=8), children, max_size=5),
    max_leaves=12)


def test_fuzzed_socket_payloads_get_error_acks_and_the_server_keeps_working(server):
    http = server.login()
    client = server.socket(http)
    from extensions import socketio as registered  # the same handlers the server runs

    events = sorted(set(registered.server.handlers["/"]) - {"connect", "disconnect"})
    assert set(events) <= set(SOCKET_RULES)
    replies = []

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(event=st.sampled_from(events), payload=json_values)
    def fuzz(event, payload):
        reply = client.call(event, payload, timeout=5)
        replies.append(reply)
        assert isinstance(reply, dict) and reply["ok"] is False, (event, payload, reply)
        assert set(reply["error"]) == {"code", "message", "field"}
        assert reply["error"]["code"] != "internal", (event, payload, reply)

    fuzz()
    client.disconnect()
    assert len(replies) >= 150
    assert run_basic_job(server, http)["status"] == "succeeded"
    assert "Traceback" not in server.log()


def test_an_oversized_payload_is_refused_and_the_server_keeps_working(server):
    http = server.login()
    client = server.socket(http)
    disconnected = []
    client.on("disconnect", lambda *args: disconnected.append(True))

    client.emit("job:start", {"runbook": "basic", "params": {"message": "x" * 200_000},
                              "servers": ["h01"]})
    wait_until(lambda: disconnected, what="oversized payload dropped the connection")

    assert http.get(f"{server.url}/api/jobs").json()["jobs"] == []
    assert run_basic_job(server, http)["status"] == "succeeded"


def test_a_disabled_users_socket_is_dropped(server):
    operator = server.login("alice")
    sock = server.socket(operator)
    dropped = []
    sock.on("disconnect", lambda *args: dropped.append(True))
    admin = server.login("root")
    users_page = admin.get(f"{server.url}/admin/users").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', users_page).group(1)
    alice_id = re.search(r'action="/admin/users/(\d+)"', users_page.split(
        'data-user="alice"')[1]).group(1)

    response = admin.post(f"{server.url}/admin/users/{alice_id}", allow_redirects=False,
                          data={"action": "disable", "role": "operator", "csrf_token": token})

    assert response.status_code == 302
    wait_until(lambda: dropped, what="alice's socket dropped")
    again = socketio.Client(http_session=operator, reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        again.connect(server.url, transports=["websocket"], wait_timeout=5,
                      auth=handshake(operator))
    assert operator.get(f"{server.url}/api/jobs").status_code == 401


def test_no_private_key_or_password_reaches_logs_events_or_pages(server, sshd_fleet):
    http = server.login()
    finished = run_basic_job(server, http)
    pages = [http.get(f"{server.url}{path}").text for path in
             ("/", "/servers", "/jobs", "/jobs/1", "/api/servers", "/api/jobs",
              "/api/jobs/1/events?limit=5000", "/api/runbooks")]
    key_lines = sshd_fleet.client_key.read_text().splitlines()[1:-1]

    haystack = "\n".join([server.log(), *pages])
    assert finished["status"] == "succeeded"
    assert PASSWORD not in haystack
    for line in key_lines:
        assert line not in haystack
    assert "PRIVATE KEY" not in haystack
