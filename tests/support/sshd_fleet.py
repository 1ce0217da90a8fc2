"""Start real OpenSSH ``sshd`` servers on loopback addresses, for tests and benchmarks.

One sshd serves up to 16 addresses (its ``ListenAddress`` limit), all on one port. Keys
are throwaway ones made in a temporary folder; the client key and a matching
``known_hosts`` are handed to Patchbay through the inventory, as a real fleet would be.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stack.processes import free_port, wait_for_port  # noqa: F401 - tests import them from here

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ADDRESSES_PER_SSHD = 16


def sshd_available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)


@dataclass
class FleetHost:
    name: str
    address: str
    port: int
    root: Path


@dataclass
class SshdFleet:
    """A running set of sshd processes; ``hosts`` lists every loopback address served."""

    directory: Path
    port: int
    client_key: Path
    known_hosts: Path
    hosts: list[FleetHost] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def inventory_entries(self, user: str = "root", game_port: int = 27015) -> list[dict]:
        return [{"name": h.name, "host": h.address, "port": h.port, "user": user,
                 "key": str(self.client_key), "known_hosts": str(self.known_hosts),
                 "tags": ["test", "odd" if i % 2 == 0 else "even"] + (["canary"] if i == 0 else []),
                 "vars": {"root": str(h.root), "game_port": game_port}}
                for i, h in enumerate(self.hosts)]

    def connections_to(self, address: str) -> int:
        """How many SSH connections sshd accepted on ``address`` (from its VERBOSE log)."""
        needle = f" on {address} port {self.port}"
        return sum(line.count(needle) for log in self.logs
                   for line in log.read_text(errors="replace").splitlines()
                   if "Connection from" in line)

    def session_processes(self) -> list[int]:
        """PIDs of the per-connection sshd children of this fleet's sshd processes
        (killing one drops that SSH connection, as a network failure would)."""
        parents = {process.pid for process in self.processes}
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) in parents:
                    children.append(int(entry))
        return children

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def start_fleet(directory: Path, count: int, first_address: str = "127.0.0.101",
                name_prefix: str = "h") -> SshdFleet:
    """Start sshd processes serving ``count`` addresses from ``first_address`` upward."""
    directory.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    host_key, client_key = directory / "host_key", directory / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    port = free_port()
    base = [int(part) for part in first_address.split(".")]
    addresses = [f"{base[0]}.{base[1]}.{base[2] + (base[3] + i) // 256}.{(base[3] + i) % 256}"
                 for i in range(count)]
    public = (directory / "host_key.pub").read_text().split()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("".join(f"[{a}]:{port} {public[0]} {public[1]}\n" for a in addresses))
    fleet = SshdFleet(directory, port, client_key, known_hosts)
    for index, address in enumerate(addresses):
        root = directory / "hosts" / f"{name_prefix}{index + 1:02d}"
        root.mkdir(parents=True, exist_ok=True)
        fleet.hosts.append(FleetHost(f"{name_prefix}{index + 1:02d}", address, port, root))
    for group_start in range(0, count, ADDRESSES_PER_SSHD):
        group = addresses[group_start:group_start + ADDRESSES_PER_SSHD]
        config = directory / f"sshd_{group_start}.conf"
        log = directory / f"sshd_{group_start}.log"
        config.write_text("\n".join([
            f"Port {port}",
            *[f"ListenAddress {a}" for a in group],
            f"HostKey {host_key}",
            f"PidFile {directory / f'sshd_{group_start}.pid'}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "MaxStartups 1000:30:1000",
            "MaxSessions 20",
            "LogLevel VERBOSE",
            # Each address is a server with a home of its own, as on a real fleet (run
            # directories and shell start-up files are per server, not shared).
            *[line for index, address in enumerate(group, start=group_start)
              for line in (f"Match LocalAddress {address}",
                           f"    SetEnv HOME={fleet.hosts[index].root}")],
            "",
        ]))
        # Its own session: a Ctrl-C at the terminal reaches whoever runs us, and they
        # stop the fleet after what uses it.
        process = subprocess.Popen([SSHD, "-f", str(config), "-D", "-E", str(log)],
                                   stdin=subprocess.DEVNULL, env={**os.environ},
                                   start_new_session=True)
        fleet.processes.append(process)
        fleet.logs.append(log)
    try:
        for address in addresses:
            wait_for_port(address, port)
    except TimeoutError:
        fleet.stop()
        raise
    return fleet
