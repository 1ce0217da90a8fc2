"""Who holds a TCP port: the demo's check that the addresses it listens on are free.

Pure Python on Linux's ``/proc`` (no ``ss`` or ``lsof``)::

    in_use("127.0.0.13", 27015)    # True if something listens there (or covers it)
    holder("127.0.0.13", 27015)    # Holder(pid=4242, command="python3 .../gameserver.py ...")

A listener is found in ``/proc/net/tcp`` and ``tcp6`` (its address, or a wildcard
``0.0.0.0`` / ``::`` that covers it, in state LISTEN), and its process by the socket's
inode among ``/proc/PID/fd``. Processes of other users cannot be looked into; the holder
then has no pid.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column
COMMAND_LIMIT = 160


@dataclass(frozen=True)
class Holder:
    """The process listening on an address:port, as far as this user can see it."""

    pid: int | None
    command: str | None

    def describe(self) -> str:
        """``pid 4242 (python3 gameserver.py serve ...)``, or why there is no pid."""
        if self.pid is None:
            return "a process this user cannot look into (another user's?)"
        if not self.command:
            return f"pid {self.pid}"
        return f"pid {self.pid} ({self.command})"


def in_use(address: str, port: int) -> bool:
    """True if ``address:port`` cannot be listened on because something holds it.

    Binds a probe socket with SO_REUSEADDR, as asyncio's and the game server's
    listeners do, so connections lingering in TIME_WAIT do not count. Other errors
    (an address that is not local, say) are raised as OSError."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def holder(address: str, port: int) -> Holder:
    """The process listening on ``address:port`` (or on a wildcard address covering it)."""
    inodes = listening_inodes(address, port)
    pid = _pid_of_socket(inodes) if inodes else None
    return Holder(pid, command_line(pid) if pid is not None else None)


def listening_inodes(address: str, port: int) -> set[str]:
    """Inodes of the LISTEN sockets that hold ``address:port``."""
    wanted = ipaddress.IPv4Address(address)
    covering = {wanted, ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::"),
                ipaddress.IPv6Address(f"::ffff:{wanted}")}
    inodes = set()
    for table in ("tcp", "tcp6"):
        for local, state, inode in _sockets(PROC / "net" / table):
            local_address, local_port = local
            if state == LISTEN and local_port == port and local_address in covering:
                inodes.add(inode)
    return inodes


def _sockets(table: Path):
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        hex_address, _, hex_port = fields[1].partition(":")
        yield (_decode_address(hex_address), int(hex_port, 16)), fields[3], fields[9]


def _decode_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # The kernel prints each 32-bit word in host (little-endian) byte order.
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def _pid_of_socket(inodes: set[str]) -> int | None:
    links = {f"socket:[{inode}]" for inode in inodes}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or another user's
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in links:
                        return int(entry.name)
    return None


def command_line(pid: int) -> str | None:
    """The process's command line, shortened to a line; None if it cannot be read."""
    try:
        args = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    flat = " ".join(" ".join(arg.decode(errors="replace").split()) for arg in args if arg)
    return flat if len(flat) <= COMMAND_LIMIT else flat[:COMMAND_LIMIT] + "..."


def arguments(pid: int) -> list[str]:
    """The process's arguments (empty if it is gone, a zombie, or unreadable)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]
