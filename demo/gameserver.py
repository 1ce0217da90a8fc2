"""Tiny stand-in game server for the Patchbay demo fleet (stdlib only).

``serve`` greets every TCP connection with one line, ``patchbay-demo-game
<version> pid=<pid>`` (the pid of the process that holds the port, so whoever
started a server can tell it from an old one still bound there; a greeting without
the ``pid=`` word, from an older server, is still read), then reads one command
line (at most ``COMMAND_WAIT`` seconds):

- ``join NAME``: the connection stays open as a player until it closes or sends
  ``leave`` (answered ``bye``). Answered ``welcome NAME COUNT``. Announcements
  reach players as ``announce TEXT`` lines; when the server stops, each player is
  sent ``bye server stopping`` and disconnected.
- ``players``: answered with the number of connected players.
- ``announce TEXT``: the text goes to the server's log (its stdout, the host's
  ``logs/game.log``) and to every player; answered ``ok COUNT`` (players told).

A client that sends nothing, or hangs up after the greeting, is a probe. Each
connection has its own thread, so a slow client never holds up the others. The
version is read once at startup, so a server keeps reporting the build it was
started from even after ``current`` is pointed elsewhere, just like a real binary
would. With ``--load-seconds`` it first spends that long "loading" (printing what
it loads) before it opens its port, as a real game server loads its map and assets.

``probe`` connects (retrying until its deadline, since the server may still be
starting), prints the reported version and exits 0, or explains on stderr and
exits 1. ``probe --pid`` prints ``<version> <pid>``: the pid from the greeting, or,
for an older server whose greeting has none, the pid of the process listening on
the port as /proc tells it (``unknown`` when it cannot be told). A server that
cannot listen (its port is taken) says so on stderr and exits 1. ``players``
prints the player count (0 when nothing listens on the port: nobody can be
connected then). ``announce TEXT`` tells the players.

The demo fleet copies this file to every host as ``bin/gameserver.py``, so it
must keep running as a standalone script.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

BANNER = "patchbay-demo-game"
RETRY_INTERVAL = 0.1
# How long a new connection may take to send its command before it counts as a probe.
COMMAND_WAIT = 2.0
# A player's socket wakes its reader this often, and bounds a send to a slow player.
PLAYER_TICK = 1.0
MAX_LINE = 1024
MAX_ANNOUNCEMENT = 200
PLAYER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
STOPPING = "bye server stopping"


class ProbeError(Exception):
    """No game server answered, or it answered something unexpected."""


class NotListening(ProbeError):
    """Nothing listens on the game port (connection refused)."""


@dataclass(frozen=True)
class Greeting:
    """What a game server says when a client connects: its version and, from a
    server that says it, the pid of the process answering."""

    version: str
    pid: int | None = None


class LineReader:
    """Lines from a socket, at most ``MAX_LINE`` bytes each (longer ones are an error)."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buffer = b""

    def readline(self) -> str | None:
        """The next line without its newline, or None at end of stream."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise ValueError(f"line longer than {MAX_LINE} bytes")
            chunk = self._conn.recv(MAX_LINE)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace").strip()


class GameServer:
    """Connections, players and the log of one running game server."""

    def __init__(self, version: str) -> None:
        self.version = version
        self._greeting = f"{BANNER} {version} pid={os.getpid()}\n".encode()
        self._lock = threading.Lock()
        self._players: dict[socket.socket, str] = {}
        self._stopping = False

    def log(self, message: str) -> None:
        """One line to stdout (the host's logs/game.log); threads never interleave."""
        with self._lock:
            print(message, flush=True)

    def player_count(self) -> int:
        with self._lock:
            return len(self._players)

    def handle(self, conn: socket.socket) -> None:
        """Serve one connection (in its own thread) until it is done."""
        with conn, contextlib.suppress(OSError, ValueError):
            conn.sendall(self._greeting)
            conn.settimeout(COMMAND_WAIT)
            reader = LineReader(conn)
            try:
                line = reader.readline()
            except TimeoutError:
                return  # a probe that reads the greeting until the connection closes
            if not line:
                return  # a probe that hung up, or an empty line
            command, _, argument = line.partition(" ")
            if command == "join":
                self._play(conn, reader, argument.strip())
            elif command == "players":
                conn.sendall(f"{self.player_count()}\n".encode())
            elif command == "announce":
                told = self.announce(argument)
                conn.sendall(f"ok {told}\n".encode())
            else:
                conn.sendall(f"error unknown command {command[:32]!r} "
                             "(try: join NAME, players, announce TEXT)\n".encode())

    def announce(self, text: str) -> int:
        """Log ``text`` and send it to every player; returns how many were told."""
        text = "".join(ch for ch in text if ch.isprintable()).strip()[:MAX_ANNOUNCEMENT]
        with self._lock:
            players = list(self._players)
            print(f"announcement to {len(players)} players: {text}", flush=True)
        told = 0
        for player in players:
            try:
                player.sendall(f"announce {text}\n".encode())
                told += 1
            except OSError:
                self._drop(player)  # too slow or gone: its reader sees the close too
        return told

    def _play(self, conn: socket.socket, reader: LineReader, name: str) -> None:
        if not PLAYER_NAME.fullmatch(name):
            conn.sendall(b"error a player name is 1-32 letters, digits, '_', '.' or '-'\n")
            return
        with self._lock:
            if self._stopping:
                conn.sendall(f"{STOPPING}\n".encode())
                return
            self._players[conn] = name
            count = len(self._players)
            print(f"player {name} joined ({count} online)", flush=True)
        # Also bounds announce()'s send to this player, so one stuck player cannot
        # hold up the others.
        conn.settimeout(PLAYER_TICK)
        try:
            conn.sendall(f"welcome {name} {count}\n".encode())
            while True:
                try:
                    line = reader.readline()
                except TimeoutError:
                    continue
                if line is None:
                    break
                if line == "leave":
                    # Counted out before the answer, so whoever waits for "bye"
                    # then sees the new count.
                    self._drop(conn)
                    conn.sendall(b"bye\n")
                    break
        finally:
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            name = self._players.pop(conn, None)
            if name is not None:
                print(f"player {name} left ({len(self._players)} online)", flush=True)

    def disconnect_all(self) -> None:
        """Say goodbye to every player and cut them off; new joins are refused."""
        with self._lock:
            self._stopping = True
            players = list(self._players)
            self._players.clear()
            print(f"disconnecting {len(players)} players", flush=True)
        for player in players:
            with contextlib.suppress(OSError):
                player.sendall(f"{STOPPING}\n".encode())
            # shutdown (not close) wakes the player's thread blocked in recv.
            with contextlib.suppress(OSError):
                player.shutdown(socket.SHUT_RDWR)


def serve(host: str, port: int, version_file: Path, pid_file: Path,
          load_seconds: float = 0.0) -> None:
    """Load for ``load_seconds``, then serve connections on host:port until
    SIGTERM/SIGINT, when every player is disconnected."""
    server = GameServer(version_file.read_text().strip())
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # Written before loading, so a stop script finds (and can stop) a server that
    # is still loading; removed only after the port is closed.
    _write_pid_file(pid_file)
    listener = None
    try:
        _load(server.version, load_seconds)
        listener = _listen(host, port)
        server.log(f"serving version {server.version} on {host}:{port} (pid {os.getpid()})")
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=server.handle, args=(conn,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        # Close before dropping the pid file: "pid file gone" then means the
        # port is free again and nobody is connected, which a stop script waits for.
        if listener is not None:
            listener.close()
        server.disconnect_all()
        _remove_own_pid_file(pid_file)
        server.log(f"stopped (pid {os.getpid()})")


def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(f"cannot listen on {host}:{port}: {why} (pid {os.getpid()})") from exc


def _load(version: str, seconds: float) -> None:
    if seconds <= 0:
        return
    phases = [f"loading build {version} assets", "loading map", "warming up the simulation"]
    for number, phase in enumerate(phases, 1):
        print(f"{phase} ({number}/{len(phases)})", flush=True)
        time.sleep(seconds / len(phases))


# --- clients ----------------------------------------------------------------------------


def probe_version(host: str, port: int, timeout: float = 5.0) -> str:
    """Return the version the game server on host:port reports (see :func:`probe`)."""
    return probe(host, port, timeout).version


def probe(host: str, port: int, timeout: float = 5.0) -> Greeting:
    """Return the greeting of the game server on host:port: its version and pid
    (None from an older server that does not say it).

    Retries refused/failed connections until ``timeout`` seconds have passed;
    ``timeout=0`` makes exactly one attempt.
    """
    deadline = time.monotonic() + timeout
    while True:
        attempt_timeout = max(0.5, min(2.0, deadline - time.monotonic()))
        try:
            with socket.create_connection((host, port), timeout=attempt_timeout) as conn:
                return _greeting(LineReader(conn), host, port)
        except ProbeError:
            raise
        except OSError as exc:
            if time.monotonic() + RETRY_INTERVAL >= deadline:
                raise ProbeError(f"no game server answering on {host}:{port} ({exc})") from exc
            time.sleep(RETRY_INTERVAL)


def ask(host: str, port: int, command: str, timeout: float = 5.0) -> str:
    """Send one command line to the game server on host:port and return its answer
    line. Raises NotListening if nothing listens there, ProbeError on an unexpected
    answer, OSError (a timeout, a reset) otherwise. One attempt, no retries."""
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError as exc:
        raise NotListening(f"no game server is listening on {host}:{port}") from exc
    with conn:
        reader = LineReader(conn)
        _greeting(reader, host, port)
        conn.sendall(f"{command}\n".encode())
        answer = reader.readline()
    if answer is None:
        raise ProbeError(f"{host}:{port} closed the connection without answering {command!r}")
    if answer.startswith("error "):
        raise ProbeError(f"{host}:{port} refused {command!r}: {answer.removeprefix('error ')}")
    return answer


def player_count(host: str, port: int, timeout: float = 5.0) -> int:
    """How many players are connected to the game server on host:port; 0 if
    nothing listens there."""
    try:
        answer = ask(host, port, "players", timeout)
    except NotListening:
        return 0
    if not answer.isdigit():
        raise ProbeError(f"unexpected answer to 'players' from {host}:{port}: {answer[:80]!r}")
    return int(answer)


def join(host: str, port: int, name: str, timeout: float = 5.0) -> tuple[socket.socket, int]:
    """Connect as player ``name``; returns the open connection (blocking, no timeout)
    and the player count including this player. The player stays connected until
    the connection is closed."""
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError as exc:
        raise NotListening(f"no game server is listening on {host}:{port}") from exc
    try:
        reader = LineReader(conn)
        _greeting(reader, host, port)
        conn.sendall(f"join {name}\n".encode())
        answer = reader.readline() or ""
        words = answer.split()
        if len(words) != 3 or words[0] != "welcome" or not words[2].isdigit():
            raise ProbeError(f"{host}:{port} did not let {name} join: {answer[:80]!r}")
    except BaseException:
        conn.close()
        raise
    conn.settimeout(None)
    return conn, int(words[2])


def _greeting(reader: LineReader, host: str, port: int) -> Greeting:
    line = reader.readline() or ""
    return parse_greeting(line, f"{host}:{port}")


def parse_greeting(line: str, where: str = "the game server") -> Greeting:
    """``patchbay-demo-game <version> [pid=<pid>]`` as a Greeting; ProbeError naming
    ``where`` for anything else. Words after these are ignored (room to grow)."""
    words = line.split()
    pid = words[2].removeprefix("pid=") if len(words) > 2 and \
        words[2].startswith("pid=") else None
    if len(words) < 2 or words[0] != BANNER or (pid is not None and not pid.isdigit()):
        raise ProbeError(f"unexpected answer from {where}: {line[:80]!r}")
    return Greeting(words[1], int(pid) if pid is not None else None)


def listener_pid(host: str, port: int) -> int | None:
    """The pid of the process listening on host:port (or on every address at that
    port), as Linux's /proc tells it; None where it cannot be told (not Linux, or
    the socket belongs to a process this user may not look into)."""
    inodes = _listening_inodes(host, port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) in wanted:
                    return int(entry.name)
    return None


def _listening_inodes(host: str, port: int) -> set[str]:
    """Socket inodes in LISTEN state on ``port`` at ``host`` or a wildcard address."""
    addresses = {host, "0.0.0.0", "::", f"::ffff:{host}"}
    inodes = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            address, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) == port and _proc_address(address, family) in addresses:
                inodes.add(fields[9])
    return inodes


def _proc_address(hex_address: str, family: int) -> str:
    # /proc/net/tcp{,6} write an address as 32-bit words in the host's byte order.
    words = [int(hex_address[i:i + 8], 16) for i in range(0, len(hex_address), 8)]
    return socket.inet_ntop(family, struct.pack(f"={len(words)}I", *words))


# --- process plumbing ---------------------------------------------------------------------


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # Raising unwinds through serve()'s finally, which cleans up the pid file.
    raise SystemExit(0)


def _write_pid_file(pid_file: Path) -> None:
    # Atomic, so a concurrent `cat run/game.pid` never sees a partial number.
    tmp = pid_file.with_name(f".{pid_file.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, pid_file)


def _remove_own_pid_file(pid_file: Path) -> None:
    # A newer server may already have claimed the file; leave that one alone.
    try:
        if pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the game server")
    serve_cmd.add_argument("--host", required=True)
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--version-file", type=Path, required=True)
    serve_cmd.add_argument("--pid-file", type=Path, required=True)
    serve_cmd.add_argument("--load-seconds", type=float, default=0.0,
                           help="time spent loading before the port opens")
    probe_cmd = commands.add_parser("probe", help="print the version a game server reports")
    probe_cmd.add_argument("--pid", action="store_true",
                           help="print '<version> <pid>': also the pid of the process "
                                "answering (unknown if it cannot be told)")
    players_cmd = commands.add_parser(
        "players", help="print how many players are connected (0 if no game server listens)")
    announce_cmd = commands.add_parser("announce", help="tell the players (and the log) TEXT")
    for client in (probe_cmd, players_cmd, announce_cmd):
        client.add_argument("--host", required=True)
        client.add_argument("--port", type=int, required=True)
        client.add_argument("--timeout", type=float, default=5.0)
    announce_cmd.add_argument("text", nargs="+", help="the announcement")
    args = parser.parse_args(argv)

    try:
        if args.command == "serve":
            serve(args.host, args.port, args.version_file, args.pid_file,
                  args.load_seconds)
        elif args.command == "probe":
            _probe(args.host, args.port, args.timeout, args.pid)
        elif args.command == "players":
            print(player_count(args.host, args.port, args.timeout))
        else:
            # One line on the wire: newlines and runs of blanks become one space.
            _announce(args.host, args.port, " ".join(" ".join(args.text).split()),
                      args.timeout)
    except (OSError, ValueError, ProbeError) as exc:
        print(f"gameserver {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _probe(host: str, port: int, timeout: float, with_pid: bool) -> None:
    greeting = probe(host, port, timeout)
    if not with_pid:
        print(greeting.version)
        return
    pid = greeting.pid if greeting.pid is not None else listener_pid(host, port)
    print(f"{greeting.version} {pid if pid is not None else 'unknown'}")


def _announce(host: str, port: int, text: str, timeout: float) -> None:
    try:
        answer = ask(host, port, f"announce {text}", timeout)
    except NotListening:
        print(f"no game server is listening on {host}:{port}: nobody to tell")
        return
    told = answer.removeprefix("ok ")
    if not answer.startswith("ok ") or not told.isdigit():
        raise ProbeError(f"unexpected answer to 'announce' from {host}:{port}: {answer[:80]!r}")
    print(f"announced to {told} player{'' if told == '1' else 's'}: {text}")


if __name__ == "__main__":
    sys.exit(main())
