"""``make cluster`` (``python -m stack.cluster``) as a user runs it: a supervisor that is
SIGKILLed leaves no PostgreSQL, Redis, nginx, node or fleet process behind, and frees
every port it held."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from stack import nginx as nginx_stack
from stack import postgres as postgres_stack
from stack import redis as redis_stack
from stack.processes import free_port
from tests.conftest import PROJECT, require_tool
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.live]


def free_run_of_ports(count: int) -> int:
    """A port ``p`` with ``p`` .. ``p + count - 1`` all free on 127.0.0.1 right now."""
    while True:
        first = free_port()
        if first + count <= 65535 and all(port_free(first + n) for n in range(count)):
            return first


def port_free(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
        return True


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """Under the system temp dir, traversable: the postgres user must reach its folder."""
    import shutil

    directory = Path(tempfile.mkdtemp(prefix="patchbay-test-cluster-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def command_of(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def still_running(processes: list[psutil.Process]) -> list[str]:
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(command_of(process))[:100]}")
        except psutil.NoSuchProcess:
            continue
    return left


def test_a_sigkilled_make_cluster_leaves_no_process_and_no_port_behind(cluster_dir):
    require_tool(postgres_stack.available(), "PostgreSQL (postgresql)")
    require_tool(redis_stack.available(), "Redis (redis-server)")
    require_tool(nginx_stack.available(), "nginx")
    port, ssh_port = free_run_of_ports(3), free_port("127.0.0.11")
    output = cluster_dir / "supervisor.out"
    with open(output, "wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "stack.cluster"], cwd=PROJECT, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PATCHBAY_PORT": str(port),
                 "PATCHBAY_DEMO_SSH_PORT": str(ssh_port),
                 "PATCHBAY_CLUSTER_DIR": str(cluster_dir / "cluster"),
                 "PATCHBAY_ADMIN_PASSWORD": "make-cluster-test-password"})
    children: list[psutil.Process] = []
    try:
        banner = wait_until(lambda: supervisor.poll() is not None or "Log in as:" in (
            text := output.read_text(errors="replace")) and text, 180,
            "make cluster to print its banner")
        assert supervisor.poll() is None, output.read_text(errors="replace")
        assert requests.get(f"http://127.0.0.1:{port}/login", timeout=10).status_code == 200
        services = {int(found) for found in re.findall(r"127\.0\.0\.1:(\d+)", banner)}
        held = sorted({port, port + 1, port + 2, *services})
        assert not [p for p in held if port_free(p)], "every port is in use while it runs"
        children[:] = descendants(supervisor.pid)
        # Its game servers detach (`setsid -f`, like a real server's): found by their folder.
        children += [process for process in psutil.process_iter()
                     if str(cluster_dir) in " ".join(command_of(process))
                     and process not in children]
        commands = " ".join(" ".join(command_of(child)) for child in children)
        for part in ("postgres", "redis-server", "nginx", "gunicorn", "demo.sshfleet",
                     "gameserver.py"):
            assert part in commands, part

        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait()

        try:
            wait_until(lambda: not still_running(children), 60, "the cluster's processes gone")
        except TimeoutError:
            pytest.fail(f"left running: {still_running(children)}")
        assert [p for p in held if not port_free(p)] == []
        assert port_free(ssh_port, "127.0.0.11")
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGINT)  # a failed start: let it clean up
            supervisor.wait(timeout=120)
        for process in children:  # whatever a failed test left: not the next test's problem
            try:
                process.kill()
            except psutil.NoSuchProcess:
                continue
