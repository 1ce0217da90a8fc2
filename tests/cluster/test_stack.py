"""The private services of ``stack/`` with the real programs: Redis from Debian's
``redis-server``, and nginx from Debian's package running the site config we ship,
in front of two tiny HTTP upstreams that report what reached them. Plus how the shipped
systemd unit's command line becomes a node's command (no console node is started here:
tests/cluster/test_cluster.py does that)."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from stack import nginx as nginx_stack
from stack import redis as redis_stack
from stack.nginx import SITE_CONFIG, PrivateNginx, render_site
from stack.nodes import UNIT_FILE, exec_start, unit_setting, working_directory
from stack.processes import free_port
from stack.redis import PrivateRedis
from tests.conftest import PROJECT, require_tool

ENV_EXAMPLE = PROJECT / "deploy" / "patchbay.env.example"


# -- Redis ------------------------------------------------------------------------------


@pytest.fixture
def redis_tool() -> None:
    require_tool(redis_stack.available(), "Redis (redis-server)")


def test_private_redis_answers_on_its_port_until_stopped(redis_tool, tmp_path: Path):
    server = PrivateRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        client = redis.Redis.from_url(server.url(1))
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        assert server.url(1) == f"redis://:{server.password}@127.0.0.1:{server.port}/1"
    finally:
        server.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(server.url(), socket_connect_timeout=2).ping()


def test_audit3b_10_private_redis_refuses_a_client_without_its_password(
        redis_tool, tmp_path: Path):
    server = PrivateRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2).ping()
        assert redis.Redis.from_url(server.url(0), socket_timeout=2).ping()
        assert server.password_path.stat().st_mode & 0o777 == 0o600
        assert server.config_path.stat().st_mode & 0o777 == 0o600
        assert server.password not in server.public_url() + server.log_tail(200)
    finally:
        server.stop()


def test_private_redis_on_a_taken_port_fails_with_its_log(redis_tool, tmp_path: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = PrivateRedis(tmp_path / "redis", squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="Address already in use"):
            server.start(timeout=20)
    assert server.process is None


# -- nginx with the shipped site ---------------------------------------------------------


class Upstream:
    """A tiny HTTP server standing in for a console node: answers every request with
    its name, the HTTP version and the headers it received; a websocket handshake gets
    101 and then an echo of whatever bytes follow."""

    def __init__(self, name: str) -> None:
        self.name = name
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    self._switch_and_echo()
                    return
                body = json.dumps({"upstream": upstream.name, "version": self.request_version,
                                   "headers": dict(self.headers)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _switch_and_echo(self) -> None:
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("X-Upstream", upstream.name)
                self.send_header("X-Received-Connection", self.headers.get("Connection", ""))
                self.end_headers()
                self.wfile.flush()
                line = self.rfile.readline()
                self.wfile.write(line)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nginx_tool() -> None:
    require_tool(nginx_stack.available(), "nginx")


@pytest.fixture
def upstreams() -> Iterator[dict[str, Upstream]]:
    servers = {name: Upstream(name) for name in ("a", "b")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def proxy(nginx_tool, tmp_path: Path, upstreams: dict[str, Upstream]) -> Iterator[PrivateNginx]:
    server = PrivateNginx(tmp_path / "nginx", free_port(),
                          [upstreams["a"].port, upstreams["b"].port])
    server.start()
    yield server
    server.stop()


def get(proxy: PrivateNginx, headers: dict[str, str] | None = None,
        source: str = "127.0.0.1") -> dict:
    """GET through nginx from the address ``source``; what the upstream saw."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10,
                                            source_address=(source, 0))
    try:
        connection.request("GET", "/socket.io/?EIO=4&transport=polling", headers=headers or {})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, body[:300]
    return json.loads(body)


def test_the_rendered_site_differs_only_in_upstream_servers_and_listen_port():
    shipped = SITE_CONFIG.read_text()
    rendered = render_site(shipped, 8080, [7001, 7002, 7003])

    rewritable = re.compile(r"^\s*(server\s+[^;{]+|listen\s+[^;]+);")
    assert ([line for line in rendered.splitlines() if not rewritable.match(line)]
            == [line for line in shipped.splitlines() if not rewritable.match(line)])
    assert [line.strip() for line in rendered.splitlines() if rewritable.match(line)] == [
        "server 127.0.0.1:7001;", "server 127.0.0.1:7002;", "server 127.0.0.1:7003;",
        "listen 127.0.0.1:8080;"]


def test_nginx_accepts_the_rendered_config(nginx_tool, tmp_path: Path):
    output = PrivateNginx(tmp_path, free_port(), [free_port(), free_port()]).check_config()
    assert "syntax is ok" in output and "test is successful" in output


def test_requests_reach_a_node_over_http_1_1_with_the_forwarding_headers(proxy, upstreams):
    seen = get(proxy)

    assert seen["upstream"] in upstreams
    assert seen["version"] == "HTTP/1.1"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["X-Forwarded-Proto"] == "http"
    assert seen["headers"]["Host"] == f"127.0.0.1:{proxy.port}"  # the port is kept
    assert seen["headers"]["Connection"] == "close"  # not an upgrade
    assert "Upgrade" not in seen["headers"]


def test_a_forged_x_forwarded_for_comes_before_the_address_nginx_saw(proxy):
    seen = get(proxy, headers={"X-Forwarded-For": "203.0.113.9"})
    # The console trusts the last PATCHBAY_TRUSTED_PROXIES (1) entries: the real one.
    assert seen["headers"]["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"


def test_a_websocket_handshake_is_passed_on_and_the_connection_tunnelled(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as connection:
        connection.sendall(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{proxy.port}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        reader = connection.makefile("rb")
        status = reader.readline()
        headers = {}
        while (line := reader.readline().strip()):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        connection.sendall(b"hello through the tunnel\n")
        echoed = reader.readline()

    assert status.startswith(b"HTTP/1.1 101"), status
    assert headers["upgrade"].lower() == "websocket"
    assert headers["x-received-connection"].lower() == "upgrade"
    assert echoed == b"hello through the tunnel\n"


def test_one_client_always_reaches_the_same_node_and_networks_spread(proxy, upstreams):
    same_client = {get(proxy)["upstream"] for _ in range(10)}
    # ip_hash keys on the first three octets: one client per /24 here.
    networks = {get(proxy, source=f"127.0.{network}.1")["upstream"] for network in range(1, 33)}

    assert len(same_client) == 1
    assert networks == set(upstreams)


def test_when_a_node_stops_its_clients_are_served_by_the_other(proxy, upstreams):
    serving = get(proxy)["upstream"]
    upstreams[serving].stop()

    after = [get(proxy)["upstream"] for _ in range(5)]

    assert set(after) == set(upstreams) - {serving}


# -- the systemd unit -------------------------------------------------------------------


def test_a_node_runs_the_units_exec_start_with_host_and_port_expanded():
    command = exec_start({"PATCHBAY_HOST": "10.0.0.11", "PATCHBAY_PORT": "5001"})

    assert command[0] == f"{sys.prefix}/bin/gunicorn"  # /opt/patchbay/.venv -> ours
    assert command[command.index("--bind") + 1] == "10.0.0.11:5001"
    assert command[command.index("-k") + 1] == "eventlet"
    assert command[command.index("-w") + 1] == "1"
    assert command[-1] == "wsgi:app"
    assert working_directory() == PROJECT  # WorkingDirectory=/opt/patchbay


def test_exec_start_expands_variables_as_systemd_does():
    unit = ("[Unit]\nExecStart=/bin/wrong\n[Service]\n"
            'ExecStart=/opt/patchbay/.venv/bin/tool --at=${HOST}:${PORT} $WORDS "$${KEPT}" \\\n'
            "  /opt/patchbay/wsgi.py\n")

    command = exec_start({"HOST": "h", "PORT": "1", "WORDS": "two  words"}, unit)

    assert command == [f"{sys.prefix}/bin/tool", "--at=h:1", "two", "words", "${KEPT}",
                       f"{PROJECT}/wsgi.py"]


def test_exec_start_refuses_an_unset_variable():
    with pytest.raises(ValueError, match="PATCHBAY_PORT"):
        exec_start({"PATCHBAY_HOST": "127.0.0.1"})


def test_the_example_environment_sets_what_the_unit_needs():
    settings = dict(re.findall(r"^(\w+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    needed = set(re.findall(r"\$\{(\w+)\}", unit_setting("ExecStart")))

    assert needed == {"PATCHBAY_HOST", "PATCHBAY_PORT"}
    assert needed <= settings.keys()
    assert unit_setting("EnvironmentFile") == "/etc/patchbay/patchbay.env"
    assert UNIT_FILE.exists()
