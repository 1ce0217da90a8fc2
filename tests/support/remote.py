"""Looking at a test host over SSH, independently of Patchbay's own transport."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paramiko


def unique_seconds(offset: int) -> str:
    """A ``sleep`` duration (1000-9999 s) no other test process uses. Tests find their
    remote commands by command line among every process of the machine (the test
    servers are local), and ``make test`` runs its main, gevent and PostgreSQL passes
    at once, each running some of the same tests: each pass gets its own hundred."""
    if not 0 <= offset < 100:
        raise ValueError("offset must be 0-99")
    if os.environ.get("PATCHBAY_ASYNC_MODE") == "gevent":
        slot = 1
    elif os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        slot = 2
    else:
        slot = 0 if "PYTEST_XDIST_WORKER" not in os.environ else 3 + os.getpid() % 60
    return str(1000 + slot * 100 + offset)


def remote_commands(address: str, port: int, user: str, key: str, known_hosts: str
                    ) -> list[str]:
    """Command lines of every process on the host, read over a fresh SSH connection."""
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.connect(address, port, user, key_filename=key, look_for_keys=False,
                   allow_agent=False, timeout=5)
    try:
        _, stdout, _ = client.exec_command("ps -eo args=")
        return [line.strip() for line in stdout.read().decode().splitlines()]
    finally:
        client.close()


class RunToTheEnd:
    """A step control that never stops the step."""

    def stop_reason(self) -> None:
        return None

    def tick(self) -> None:
        return None


@contextmanager
def host_session(fleet, index: int) -> Iterator[tuple[Any, Any]]:
    """A connected SSH session of Patchbay's own transport to test host ``index``, with
    that host's template context."""
    from tasks.planning.rendered_steps import HostContext
    from tasks.transport.protocol import Target
    from tasks.transport.ssh import SSHHostSession

    host = fleet.hosts[index]
    session = SSHHostSession(Target(host.name, host.address, host.port, "root",
                                    str(fleet.client_key), str(fleet.known_hosts)))
    session.connect()
    try:
        yield session, HostContext(host.name, host.address, host.port, "root", {})
    finally:
        session.close()
