"""Several console nodes, all real: PostgreSQL, Redis and nginx from Debian's packages as
private processes (``stack/``), nodes started as the shipped systemd unit starts them
(gunicorn, eventlet), and the OpenSSH fleet on loopback.

One job is followed from another node, directly and through nginx over both transports;
a node killed with ``kill -9`` has its job taken over (once, by one of two racing
nodes); cancel, user changes and the login limit reach across nodes; and Chromium,
through nginx, keeps the whole log when the node serving it dies.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
import socketio
from playwright.sync_api import expect
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from models import AuditEntry, Job, JobEvent, Node, ServerLock
from stack import nginx as nginx_stack
from stack import redis as redis_stack
from stack.nginx import PrivateNginx
from stack.nodes import NodeProcess
from stack.processes import free_port
from stack.redis import PrivateRedis
from tests.conftest import PASSWORD, PROJECT, require_tool, write_inventory
from tests.support.console_world import log_in, rendered_logs, run_from_dashboard
from tests.support.live_server import handshake, prepare_database, session_csrf_token
from tests.support.remote import remote_commands, unique_seconds
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.live, pytest.mark.sshd]
NAP = unique_seconds(30)  # found on the servers by its command line

NODE_TIMEOUT = 4  # seconds: short, so takeover tests stay quick
SECRET = "cluster-test-secret-shared-by-every-node"
USERS = [("alice", PASSWORD, "operator"), ("admin", PASSWORD, "admin")]
LOGIN_LIMIT = 4  # attempts per minute


# -- the services (once per module) ------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[PrivateRedis]:
    require_tool(redis_stack.available(), "Redis (redis-server)")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node_ports() -> dict[str, int]:
    return {name: free_port() for name in ("node-a", "node-b", "node-c")}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, node_ports) -> Iterator[PrivateNginx]:
    """nginx with the shipped site config, in front of node-a and node-b."""
    require_tool(nginx_stack.available(), "nginx")
    server = PrivateNginx(tmp_path_factory.mktemp("nginx"), free_port(),
                          [node_ports["node-a"], node_ports["node-b"]])
    server.start()
    yield server
    server.stop()


# -- one cluster per test -----------------------------------------------------------------


@dataclass
class Cluster:
    database_url: str
    redis_url: str
    env: dict[str, str]
    proxy: PrivateNginx
    nodes: dict[str, NodeProcess] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.proxy.url if name == "proxy" else self.nodes[name].url

    def login(self, where: str, username: str = "alice") -> requests.Session:
        http = requests.Session()
        response = try_login(http, self.url(where), username, PASSWORD)
        assert response.status_code == 302, response.text[:500]
        return http

    def socket(self, where: str, http: requests.Session,
               transports: list[str] | None = None) -> socketio.Client:
        client = socketio.Client(http_session=http, reconnection=False)
        client.connect(self.url(where), transports=transports or ["websocket"],
                       wait_timeout=10, auth=handshake(http))
        return client

    def start_job(self, where: str, http: requests.Session, payload: dict) -> int:
        response = http.post(f"{self.url(where)}/api/jobs", json=payload, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["job_id"]

    def flask(self, *args: str) -> subprocess.CompletedProcess:
        """A ``flask`` command run as an admin would, from a process with no sockets."""
        return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args],
                              cwd=PROJECT, env={**self.env, "PATCHBAY_PORT": "1"},
                              capture_output=True, text=True, timeout=60)

    # The database, read as any other process could.

    def query(self, statement):
        engine = create_engine(self.database_url)
        try:
            with Session(engine, expire_on_commit=False) as session:
                return list(session.execute(statement))
        finally:
            engine.dispose()

    def events(self, job_id: int) -> list[dict]:
        return [row[0].to_dict() for row in self.query(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))]

    def job(self, job_id: int) -> Job:
        return self.query(select(Job).where(Job.id == job_id))[0][0]

    def wait_finished(self, job_id: int, timeout: float = 90) -> Job:
        return wait_until(lambda: (job := self.job(job_id)).status not in ("running", "paused")
                          and job, timeout, f"job {job_id} to finish")


def try_login(http: requests.Session, url: str, username: str, password: str
              ) -> requests.Response:
    page = http.get(f"{url}/login", timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    response = http.post(f"{url}/login", timeout=10, allow_redirects=False,
                         data={"username": username, "password": password,
                               "csrf_token": token})
    if response.status_code == 302:
        http.headers["X-CSRFToken"] = session_csrf_token(http, url)
    return response


@pytest.fixture
def cluster(private_postgres, redis_server, proxy, node_ports, sshd_fleet, tmp_path
            ) -> Iterator[Cluster]:
    """A fresh database on the private PostgreSQL, a clean Redis, and node-a and node-b
    (node-c is started by the test that needs a third node)."""
    url = private_postgres.create_database(f"cluster_{uuid.uuid4().hex[:10]}")
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    prepare_database(tmp_path, inventory=inventory, runbook_dir=PROJECT / "tests" / "runbooks",
                     users=USERS, url=url)
    redis.Redis.from_url(redis_server.url()).flushall()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PATCHBAY_ASYNC_MODE": "eventlet",  # gunicorn -k eventlet, whatever the pass
        "PATCHBAY_MESSAGE_QUEUE": redis_server.url(0),
        "PATCHBAY_RATELIMIT_STORAGE_URI": redis_server.url(1),
        "PATCHBAY_TRUSTED_PROXIES": "1",
        "PATCHBAY_NODE_TIMEOUT": str(NODE_TIMEOUT),
        "PATCHBAY_NODE_HEARTBEAT": "0.5",
        "PATCHBAY_SECRET_KEY": SECRET,
        "PATCHBAY_RUNBOOK_DIR": str(PROJECT / "tests" / "runbooks"),
        "PATCHBAY_KILL_GRACE": "2",
        "PATCHBAY_LOGIN_RATE_LIMIT": f"{LOGIN_LIMIT} per minute",
    }
    world = Cluster(url, redis_server.url(), env, proxy)
    for name in ("node-a", "node-b"):
        start_node(world, name, node_ports[name], tmp_path)
    yield world
    for node in world.nodes.values():
        node.kill9()  # quick, and nothing of a test outlives it
    private_postgres.drop_database(url.rsplit("/", 1)[1])


def start_node(world: Cluster, name: str, port: int, tmp_path: Path) -> NodeProcess:
    node = NodeProcess(name, port, {**world.env, "PATCHBAY_NODE_ID": name,
                                    "PATCHBAY_INSTANCE_PATH": str(tmp_path / name)},
                       tmp_path / f"{name}.log")
    node.start()
    world.nodes[name] = node
    return node


def lines_of(events: list[dict], host: str) -> list[str]:
    return [line for e in events if e["type"] == "output" and e["host"] == host
            and e["data"]["stream"] == "stdout" for line in e["data"]["lines"]]


def follow(client: socketio.Client, job_id: int) -> list[dict]:
    """Subscribe from the start and collect the job's events until ``job_finished``."""
    received: list[dict] = []
    done = threading.Event()

    def on_events(payload: dict) -> None:
        if payload["job_id"] != job_id:
            return
        received.extend(payload["events"])
        if any(e["type"] == "job_finished" for e in payload["events"]):
            done.set()

    client.on("job:events", on_events)
    ack = client.call("job:subscribe", {"job_id": job_id, "after_seq": 0}, timeout=10)
    assert ack["ok"], ack
    assert done.wait(90), f"no job_finished; last received: {received[-3:]}"
    return received


def node_behind(proxy_url: str) -> str:
    """The node nginx sends this client (127.0.0.1) to."""
    return requests.get(f"{proxy_url}/login", timeout=10).headers["X-Patchbay-Node"]


# -- following a job from another node ------------------------------------------------------


@pytest.mark.parametrize("route,transports", [
    ("direct", ["websocket"]),
    ("proxy", ["websocket"]),
    ("proxy", ["polling"]),
], ids=["node-b-websocket", "nginx-websocket", "nginx-long-polling"])
def test_a_client_on_one_node_follows_a_job_running_on_another(cluster, sshd_fleet, route,
                                                               transports):
    watcher_node = "node-b" if route == "direct" else node_behind(cluster.proxy.url)
    runner_node = "node-a" if watcher_node == "node-b" else "node-b"
    where = "node-b" if route == "direct" else "proxy"
    names = [host.name for host in sshd_fleet.hosts[:4]]

    watcher_http = cluster.login(where)
    client = cluster.socket(where, watcher_http, transports)
    assert client.transport() == transports[0]
    job_id = cluster.start_job(runner_node, cluster.login(runner_node), {
        "runbook": "numbered", "params": {"lines": "30"}, "servers": names})
    received = follow(client, job_id)
    client.disconnect()

    assert cluster.job(job_id).node_id == runner_node
    stored = cluster.events(job_id)
    by_seq = {e["seq"]: e for e in received}
    assert sorted(by_seq) == [e["seq"] for e in stored]  # no gap, nothing missing
    assert [by_seq[e["seq"]] for e in stored] == stored  # ... and each as stored
    for name in names:
        assert lines_of(stored, name) == [f"line {i}" for i in range(1, 31)] + ["counted"]


# -- a node dies -------------------------------------------------------------------------


def test_a_node_killed_mid_job_has_its_job_taken_over_once(cluster, sshd_fleet, node_ports,
                                                           tmp_path):
    """node-a dies with ``kill -9``; node-b and node-c race for its job: exactly one
    resumes it, every line arrives once, the locks go, and node-b can run the servers
    again."""
    start_node(cluster, "node-c", node_ports["node-c"], tmp_path)
    names = [host.name for host in sshd_fleet.hosts[:4]]
    http = cluster.login("node-a")
    job_id = cluster.start_job("node-a", http, {
        "runbook": "numbered", "params": {"lines": "100"}, "servers": names})
    wait_until(lambda: all(len(lines_of(cluster.events(job_id), n)) >= 10 for n in names),
               60, "output from every server")

    cluster.nodes["node-a"].kill9()
    before = cluster.events(job_id)
    recovered = wait_until(lambda: [e for e in cluster.events(job_id)
                                    if e["type"] == "job_recovered"],
                           NODE_TIMEOUT + 10, "a live node to take the job over")
    job = cluster.wait_finished(job_id)

    events = cluster.events(job_id)
    assert len(recovered) == 1
    winner = recovered[0]["data"]["node"]
    assert winner in ("node-b", "node-c")
    assert [e["data"]["node"] for e in events if e["type"] == "job_recovered"] == [winner]
    assert "node node-a stopped answering" in recovered[0]["data"]["reason"]
    assert events[:len(before)] == before
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (job.status, job.node_id) == ("succeeded", winner)
    for name in names:
        assert lines_of(events, name) == [f"line {i}" for i in range(1, 101)] + ["counted"]
    assert cluster.query(select(ServerLock)) == []
    nodes = {row[0].id: row[0] for row in cluster.query(select(Node))}
    assert set(nodes) == {"node-a", "node-b", "node-c"}

    again = cluster.start_job("node-b", cluster.login("node-b"), {
        "runbook": "basic", "params": {"message": "again"}, "servers": names})
    assert cluster.wait_finished(again).status == "succeeded"


def test_a_paused_job_of_a_dead_node_is_taken_over_still_paused_and_promoted(cluster,
                                                                             sshd_fleet):
    """node-a dies while its job waits at a manual gate: node-b takes it over, still
    paused (no second pause, no batch started meanwhile), and promoting it there runs the
    rest."""
    names = [host.name for host in sshd_fleet.hosts[4:7]]
    http = cluster.login("node-a")
    job_id = cluster.start_job("node-a", http, {
        "runbook": "basic", "params": {"message": "gated"}, "servers": names,
        "strategy": {"batches": [1], "gate": "manual"}})
    wait_until(lambda: cluster.job(job_id).status == "paused", 60, "the job paused")

    cluster.nodes["node-a"].kill9()
    wait_until(lambda: [e for e in cluster.events(job_id) if e["type"] == "job_recovered"],
               NODE_TIMEOUT + 10, "node-b to take the paused job over")
    paused = cluster.job(job_id)
    on_b = cluster.login("node-b")
    promoted = on_b.post(f"{cluster.url('node-b')}/api/jobs/{job_id}/promote", timeout=10)
    job = cluster.wait_finished(job_id)

    events = cluster.events(job_id)
    assert (paused.status, paused.node_id) == ("paused", "node-b")
    assert promoted.status_code == 200, promoted.text
    assert (job.status, job.node_id) == ("succeeded", "node-b")
    assert [e["type"] for e in events].count("job_paused") == 1
    assert [e["data"]["by"] for e in events if e["type"] == "job_resumed"] == ["alice"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert cluster.query(select(ServerLock)) == []


def test_the_nodes_page_shows_each_node_its_state_and_jobs(cluster, sshd_fleet):
    http = cluster.login("node-b", "admin")
    job_id = cluster.start_job("node-a", http, {
        "runbook": "sleepy", "params": {"seconds": "30"},
        "servers": [sshd_fleet.hosts[0].name]})
    cluster.nodes["node-a"].kill9()

    def page() -> str:
        return http.get(f"{cluster.url('node-b')}/admin/nodes", timeout=10).text

    assert re.search(r'data-node="node-a" data-state="live"', page())
    text = wait_until(lambda: (text := page()) and 'data-node="node-a" data-state="dead"'
                      in text and text, NODE_TIMEOUT + 5, "node-a shown dead")
    assert re.search(r'data-node="node-b" data-state="live"', text)
    assert f"/jobs/{job_id}" in text
    cluster.nodes["node-b"].kill9()  # the job would otherwise sleep on


# -- control from any node ------------------------------------------------------------------


def test_cancel_on_one_node_kills_the_remote_process_of_a_job_on_another(cluster, sshd_fleet):
    host = sshd_fleet.hosts[0]
    http = cluster.login("node-a")
    job_id = cluster.start_job("node-a", http, {
        "runbook": "sleepy", "params": {"seconds": NAP}, "servers": [host.name]})

    def sleeping() -> bool:
        return any(c.startswith(f"sleep {NAP}") for c in remote_commands(
            host.address, host.port, "root", str(sshd_fleet.client_key),
            str(sshd_fleet.known_hosts)))

    wait_until(sleeping, 30, "the remote sleep to start")
    response = cluster.login("node-b").post(
        f"{cluster.url('node-b')}/api/jobs/{job_id}/cancel", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["cancelled"] is True
    job = cluster.wait_finished(job_id, 30)
    assert job.status == "cancelled"
    wait_until(lambda: not sleeping(), 15, "the remote sleep to be gone")


def test_a_user_disabled_from_the_cli_loses_their_sockets_on_every_node(cluster):
    sockets = {}
    dropped = {name: threading.Event() for name in ("node-a", "node-b")}
    for name in dropped:
        client = cluster.socket(name, cluster.login(name))
        client.on("disconnect", lambda *args, name=name: dropped[name].set())
        sockets[name] = client

    result = cluster.flask("disable-user", "alice")
    assert result.returncode == 0, result.stderr

    for name, event in dropped.items():
        assert event.wait(15), f"alice's socket on {name} is still connected"
    response = try_login(requests.Session(), cluster.url("node-b"), "alice", PASSWORD)
    assert response.status_code != 302


def test_the_login_limit_counts_attempts_on_every_node(cluster):
    urls = [cluster.url("node-a"), cluster.url("node-b")]
    for attempt in range(LOGIN_LIMIT):
        response = try_login(requests.Session(), urls[attempt % 2], "alice", "wrong")
        assert response.status_code == 401, (attempt, response.status_code)
    for url in urls:
        response = try_login(requests.Session(), url, "alice", PASSWORD)
        assert response.status_code == 429, url


def test_behind_nginx_the_real_client_address_is_seen_and_a_forged_one_is_not(cluster):
    """The login limit and the audit log see the address nginx saw (127.0.0.2 here),
    not nginx's own, nor what the client claims in X-Forwarded-For."""
    connection = http.client.HTTPConnection("127.0.0.1", cluster.proxy.port, timeout=10,
                                            source_address=("127.0.0.2", 0))
    connection.request("GET", "/login")
    page = connection.getresponse()
    body = page.read().decode()
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', body).group(1)
    form = f"username=alice&password=wrong&csrf_token={token}"
    connection.request("POST", "/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
        "X-Forwarded-For": "203.0.113.9"})
    connection.getresponse().read()
    connection.close()

    entries = [row[0] for row in cluster.query(
        select(AuditEntry).where(AuditEntry.action.startswith("login")))]
    assert [entry.remote_addr for entry in entries] == ["127.0.0.2"]


# -- the browser, through nginx --------------------------------------------------------------


@pytest.mark.browser
def test_the_page_survives_the_death_of_the_node_serving_it(cluster, sshd_fleet, browser):
    names = [host.name for host in sshd_fleet.hosts]  # the dashboard runs on every server
    serving = node_behind(cluster.proxy.url)
    other = "node-a" if serving == "node-b" else "node-b"
    page = browser.new_page()
    log_in(page, cluster.proxy.url)
    job_id = run_from_dashboard(page, "numbered", {"lines": "120"})
    expect(page.locator("#job-status")).to_have_text("running", timeout=30_000)
    wait_until(lambda: all(len(lines_of(cluster.events(job_id), n)) >= 10 for n in names),
               60, "output from every server")

    cluster.nodes[serving].kill9()
    assert node_behind(cluster.proxy.url) == other
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)

    events = cluster.events(job_id)
    expected = {n: [f"line {i}" for i in range(1, 121)] + ["counted"] for n in names}
    assert {n: lines_of(events, n) for n in names} == expected
    wait_until(lambda: rendered_logs(page, names) == expected, 30, "the page shows every line")
    page.close()
