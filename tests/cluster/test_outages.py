"""PostgreSQL or Redis going away and coming back, under a real two-node cluster (nodes
started as the systemd unit starts them, a private PostgreSQL and Redis of this module's
own, restarted by the tests): every node recovers by itself, says so in its log (one
line when the service goes, one when it is back) and on the Nodes page, and jobs started
afterwards run and reach a watcher on the other node."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests

from models import utcnow
from stack import postgres as postgres_stack
from stack import redis as redis_stack
from stack.nodes import NodeProcess
from stack.postgres import PrivatePostgres
from stack.processes import free_port
from stack.redis import PrivateRedis
from tasks.nodes.health import Dependency, from_row, to_row
from tests.cluster.test_cluster import SECRET, USERS, Cluster, follow, lines_of, try_login
from tests.conftest import PROJECT, require_tool, write_inventory
from tests.support.live_server import prepare_database
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.live, pytest.mark.sshd]

NODES = ("node-a", "node-b")


# -- the health bookkeeping (pure) -------------------------------------------------------


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    caplog.set_level("INFO", logger="tasks.nodes.health")
    database = Dependency("database")
    for _attempt in range(5):
        database.failed("OperationalError: connection refused")
    down = database.state
    database.succeeded()
    database.succeeded()

    assert [r.getMessage() for r in caplog.records] == [
        "database unreachable: OperationalError: connection refused; retrying",
        f"database reachable again after {database.state.last_outage_seconds:.0f} s"]
    assert down.down_since is not None and not down.ok
    assert database.state.ok and database.state.last_outage_at == down.down_since
    assert from_row(to_row([database])) == {"database": database.state}


# -- a cluster whose services the tests restart -------------------------------------------


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PrivatePostgres]:
    """Not the session's server: these tests stop and start it."""
    require_tool(postgres_stack.available(), "PostgreSQL (postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="patchbay-test-outage-postgres-"))
    server = PrivatePostgres(directory, free_port(), settings=postgres_stack.THROWAWAY)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    require_tool(redis_stack.available(), "Redis (redis-server)")
    server = PrivateRedis(tmp_path_factory.mktemp("outage-redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(own_postgres, own_redis, sshd_fleet, tmp_path_factory) -> Iterator[Cluster]:
    """node-a and node-b on one database and one Redis, for the whole module."""
    tmp_path = tmp_path_factory.mktemp("outage-cluster")
    url = own_postgres.create_database(f"outage_{uuid.uuid4().hex[:10]}")
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    prepare_database(tmp_path, inventory=inventory, runbook_dir=PROJECT / "tests" / "runbooks",
                     users=USERS, url=url)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PATCHBAY_ASYNC_MODE": "eventlet",
        "PATCHBAY_MESSAGE_QUEUE": own_redis.url(0),
        "PATCHBAY_RATELIMIT_STORAGE_URI": own_redis.url(1),
        "PATCHBAY_NODE_HEARTBEAT": "0.5",
        "PATCHBAY_NODE_TIMEOUT": "60",  # an outage must not look like a dead node
        "PATCHBAY_SECRET_KEY": SECRET,
        "PATCHBAY_RUNBOOK_DIR": str(PROJECT / "tests" / "runbooks"),
        "PATCHBAY_LOGIN_RATE_LIMIT": "100 per minute",  # the tests log in often
    }
    world = Cluster(url, own_redis.url(), env, proxy=None)
    for name in NODES:
        node = NodeProcess(name, free_port(), {**env, "PATCHBAY_NODE_ID": name,
                                               "PATCHBAY_INSTANCE_PATH": str(tmp_path / name)},
                           tmp_path / f"{name}.log")
        node.start()
        world.nodes[name] = node
    yield world
    for node in world.nodes.values():
        node.kill9()


def log_since(node: NodeProcess, offset: int) -> str:
    return node.log_path.read_bytes()[offset:].decode(errors="replace")


def log_ends(cluster: Cluster) -> dict[str, int]:
    return {name: node.log_path.stat().st_size for name, node in cluster.nodes.items()}


def wait_logged(cluster: Cluster, since: dict[str, int], pattern: str, what: str) -> None:
    for name, node in cluster.nodes.items():
        try:
            wait_until(lambda node=node, name=name: re.search(pattern,
                                                              log_since(node, since[name])),
                       30, f"{name} to log {what}")
        except TimeoutError:
            pytest.fail(f"{name} did not log {what}; its log since:\n"
                        f"{log_since(node, since[name])[-3000:]}")


def nodes_page_rows(http: requests.Session, cluster: Cluster) -> dict[str, str]:
    text = http.get(f"{cluster.url('node-b')}/admin/nodes", timeout=10).text
    return {name: re.search(rf'<tr data-node="{name}"[^>]*>.*?</tr>', text, re.S).group(0)
            for name in NODES}


def assert_recovered_on_the_nodes_page(cluster: Cluster, attribute: str,
                                       went_down_after) -> None:
    """Every node is shown ok again with a last outage that began after ``went_down_after``
    (as rendered, to the second)."""
    http = cluster.login("node-b", "admin")

    def shown() -> dict[str, str] | None:
        rows = nodes_page_rows(http, cluster)
        return rows if all(f'{attribute}="ok"' in row and "last outage" in row
                           for row in rows.values()) else None

    rows = wait_until(shown, 30, f"every node shown with {attribute} ok after an outage")
    for name, row in rows.items():
        cell = re.search(rf'class="node-{attribute[5:]}">(.*?)</td>', row, re.S).group(1)
        started = re.search(r"last outage <time datetime=\"([^\"]+)Z\"", cell).group(1)
        assert started >= went_down_after.isoformat(timespec="seconds"), (name, cell)
        assert re.search(r"</time>, \d+ s</span>", cell), (name, cell)


def assert_a_new_job_reaches_a_watcher_on_the_other_node(cluster: Cluster, sshd_fleet) -> None:
    names = [host.name for host in sshd_fleet.hosts[:2]]
    watcher = cluster.socket("node-b", cluster.login("node-b"))
    try:
        job_id = cluster.start_job("node-a", cluster.login("node-a"), {
            "runbook": "numbered", "params": {"lines": "20"}, "servers": names})
        received = follow(watcher, job_id)
    finally:
        watcher.disconnect()
    assert cluster.job(job_id).status == "succeeded"
    stored = cluster.events(job_id)
    by_seq = {e["seq"]: e for e in received}
    assert sorted(by_seq) == [e["seq"] for e in stored]
    for name in names:
        assert lines_of(stored, name) == [f"line {i}" for i in range(1, 21)] + ["counted"]


def test_a_restarted_postgresql_is_noticed_and_recovered_by_every_node(cluster, own_postgres,
                                                                      sshd_fleet):
    since = log_ends(cluster)
    before = utcnow() - timedelta(seconds=1)

    own_postgres.stop()  # fast shutdown: every session is ended
    wait_logged(cluster, since, r"WARNING tasks\.nodes\.health: database unreachable: .+; retrying",
                "the database outage")
    own_postgres.start()  # the same port and data
    wait_logged(cluster, since,
                r"WARNING tasks\.nodes\.health: database reachable again after \d+ s",
                "the database's return")

    for name, node in cluster.nodes.items():
        text = log_since(node, since[name])
        assert len(re.findall("database unreachable", text)) == 1, text[-3000:]
        assert "Traceback" not in text, text[max(0, text.find("Traceback") - 600):][:1500]
    assert_recovered_on_the_nodes_page(cluster, "data-database", before)
    assert_a_new_job_reaches_a_watcher_on_the_other_node(cluster, sshd_fleet)


def test_a_restarted_redis_is_noticed_and_recovered_by_every_node(cluster, own_redis,
                                                                 sshd_fleet):
    since = log_ends(cluster)
    before = utcnow() - timedelta(seconds=1)

    own_redis.stop()
    wait_logged(cluster, since, r"WARNING tasks\.nodes\.health: message queue unreachable: .+; "
                "retrying", "the message queue outage")
    for name in NODES:  # the login limiter falls back to counting in memory, per node
        try_login(requests.Session(), cluster.url(name), "alice", "wrong")
    own_redis.start()  # the same port, empty
    wait_logged(cluster, since,
                r"WARNING tasks\.nodes\.health: message queue reachable again after \d+ s",
                "the message queue's return")
    wait_logged(cluster, since, r"rate limit storage reachable again",
                "the limiter back on Redis")

    for name, node in cluster.nodes.items():
        text = log_since(node, since[name])
        assert len(re.findall("message queue unreachable", text)) == 1, text[-3000:]
        assert "Cannot receive from redis" not in text and "Cannot publish" not in text
        assert "Traceback" not in text, text[max(0, text.find("Traceback") - 600):][:1500]
    assert_recovered_on_the_nodes_page(cluster, "data-message-queue", before)
    assert_a_new_job_reaches_a_watcher_on_the_other_node(cluster, sshd_fleet)
    # One failed login on each node, counted in the one shared storage again.
    limits = redis.Redis.from_url(own_redis.url(1))
    limits.flushdb()
    for name in NODES:
        assert try_login(requests.Session(), cluster.url(name), "alice",
                         "wrong").status_code == 401
    counts = [int(limits.get(key)) for key in limits.scan_iter() if limits.type(key) == b"string"]
    assert 2 in counts, counts
