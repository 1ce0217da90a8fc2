"""The benchmark fleet: real OpenSSH sshd processes serving many loopback addresses.

sshd takes at most 16 ``ListenAddress`` lines, so ``tests.support.sshd_fleet`` starts one sshd
per 16 addresses (63 of them for 1,000 hosts), all on one port. The benchmark uses
127.1.0.1 upward so it never meets the test suite's fleets (127.0.0.x).
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import yaml

from tests.support.sshd_fleet import SshdFleet, sshd_available, start_fleet

FIRST_ADDRESS = "127.1.0.1"


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one (children inherit it): 1,000
    SSH connections plus hundreds of sockets need more than the usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start(directory: Path, count: int) -> SshdFleet:
    if not sshd_available():
        raise SystemExit("OpenSSH sshd is not installed: run `scripts/system-deps.sh test`")
    return start_fleet(directory, count, first_address=FIRST_ADDRESS, name_prefix="b")


def write_inventory(fleet: SshdFleet, path: Path) -> Path:
    """The fleet as a Patchbay inventory (every host tagged ``bench``)."""
    entries = fleet.inventory_entries()
    for entry in entries:
        entry["tags"] = ["bench"]
    path.write_text(yaml.safe_dump({"servers": entries}))
    return path


def write_contender_fleet(fleet: SshdFleet, path: Path, commands: list[str],
                          connect_timeout: int) -> Path:
    """What ``bench.contenders`` needs to reach the same hosts."""
    path.write_text(json.dumps({
        "commands": commands,
        "connect_timeout": connect_timeout,
        "hosts": [{"name": h.name, "address": h.address, "port": h.port, "user": "root",
                   "key": str(fleet.client_key), "known_hosts": str(fleet.known_hosts)}
                  for h in fleet.hosts],
    }))
    return path
