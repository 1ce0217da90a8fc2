"""Looking at a test host over SSH, independently of Patchbay's own transport."""

from __future__ import annotations

import paramiko


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
