"""Simulated players for the demo fleet's game servers::

    python -m demo.players [--state-dir DIR] SERVER join N
    python -m demo.players [--state-dir DIR] SERVER leave N

``join`` connects N players to SERVER's game server (gs-01, ...) and returns once
the game server counts them; each player is a small detached process that stays
connected after the command exits, until ``leave`` disconnects it or the game
server stops (a deploy's ``stop`` step does). ``leave`` disconnects the N players
that joined last and returns once the game server has counted them out.

The demo fleet's state directory (``make run``: ``.demo/fleet``, or
``$PATCHBAY_DEMO_DIR/fleet``) gives each server's game address and port
(``inventory.yml``). The players' pid files and their log (what they heard from
the server) live in ``DIR/players/SERVER/``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import yaml

from demo import gameserver

PROJECT = Path(__file__).resolve().parent.parent
MAX_PLAYERS = 100
JOIN_TIMEOUT = 10.0
LEAVE_TIMEOUT = 10.0
PLAYER = re.compile(r"player-(\d+)")
HOLD = "_hold"  # the hidden mode a player process runs in


class PlayersError(Exception):
    """A command that cannot be done; the message says why (nothing was changed)."""


@dataclass(frozen=True)
class GameAddress:
    """Where one demo server's game server listens, and where its players' files go."""

    server: str
    host: str
    port: int
    players_dir: Path


def default_state_dir() -> Path:
    """The state directory ``make run`` gives the demo fleet (scripts/run-demo.sh)."""
    return Path(os.environ.get("PATCHBAY_DEMO_DIR") or PROJECT / ".demo") / "fleet"


def find_server(state_dir: Path, server: str) -> GameAddress:
    """Look ``server`` up in the fleet's inventory; PlayersError if it is not there."""
    inventory = state_dir / "inventory.yml"
    try:
        servers = yaml.safe_load(inventory.read_text())["servers"]
    except FileNotFoundError:
        raise PlayersError(f"no demo fleet in {state_dir} ({inventory.name} is missing): "
                           "start one with `make run`, or pass --state-dir") from None
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise PlayersError(f"cannot read the demo fleet's inventory {inventory}: {exc}") from exc
    names = [entry["name"] for entry in servers]
    for entry in servers:
        if entry["name"] == server:
            return GameAddress(server, entry["host"], int(entry["vars"]["game_port"]),
                               state_dir / "players" / server)
    raise PlayersError(f"unknown server {server!r}: the demo fleet in {state_dir} has "
                       f"{', '.join(names)}")


def player_count(text: str) -> int:
    """Parse N: a whole number from 1 to MAX_PLAYERS (argparse type)."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PLAYERS:
        raise argparse.ArgumentTypeError(
            f"N must be a whole number from 1 to {MAX_PLAYERS}, not {text!r}")
    return int(text)


# --- the players of one server -------------------------------------------------------------


def connected(game: GameAddress) -> dict[str, int]:
    """Simulated players of ``game`` whose process is alive: name -> pid, oldest first.
    Pid files of dead players (killed without cleaning up) are removed."""
    players = {}
    for pid_file in game.players_dir.glob("player-*.pid"):
        if not PLAYER.fullmatch(pid_file.stem):
            continue
        pid = _alive_pid(pid_file)
        if pid is None:
            pid_file.unlink(missing_ok=True)
        else:
            players[pid_file.stem] = pid
    return dict(sorted(players.items(), key=lambda item: int(item[0].split("-")[1])))


def _alive_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # Guards against signalling an unrelated process that reused a stale pid (a
    # zombie's cmdline is empty).
    return pid if b"demo.players" in cmdline and pid_file.stem.encode() in cmdline else None


@contextlib.contextmanager
def _locked(game: GameAddress) -> Iterator[None]:
    """One join/leave at a time per server, so two never pick the same player names."""
    game.players_dir.mkdir(parents=True, exist_ok=True)
    with open(game.players_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def join(game: GameAddress, count: int) -> list[str]:
    """Connect ``count`` new players; returns their names. All or nothing: if one
    cannot join, the ones this call connected leave again."""
    with _locked(game):
        existing = connected(game)
        numbers = {int(name.split("-")[1]) for name in existing}
        names = []
        number = 0
        while len(names) < count:
            number += 1
            if number not in numbers:
                names.append(f"player-{number}")
        joined: list[str] = []
        try:
            for name in names:
                _spawn_player(game, name)
                joined.append(name)
        except PlayersError:
            _disconnect(game, {name: pid for name, pid in connected(game).items()
                               if name in joined})
            raise
        return joined


def leave(game: GameAddress, count: int) -> list[str]:
    """Disconnect the ``count`` players that joined last; returns their names."""
    with _locked(game):
        players = connected(game)
        if count > len(players):
            raise PlayersError(f"{game.server} has {len(players)} simulated players "
                               f"connected; cannot disconnect {count}")
        leaving = dict(list(players.items())[len(players) - count:])
        _disconnect(game, leaving)
        return list(leaving)


def _spawn_player(game: GameAddress, name: str) -> None:
    command = [sys.executable, "-m", "demo.players", HOLD, str(game.players_dir.parent.parent),
               game.server, name]
    # `setsid -f` forks and returns at once: the player gets its own session and is
    # re-parented to init, so it outlives this command. It reports on the pipe.
    with subprocess.Popen(["setsid", "-f", *command], cwd=PROJECT, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        answer = _read_line(process.stdout, JOIN_TIMEOUT)
    if not answer.startswith("joined "):
        detail = answer.removeprefix("error ") or f"no answer within {JOIN_TIMEOUT:g} s"
        raise PlayersError(f"{name} could not join {game.server}: {detail}")


def _read_line(pipe, timeout: float) -> str:
    # The player keeps the pipe open until it has joined (or failed), then closes it.
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in data and (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            chunk = os.read(pipe.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").strip().splitlines()[-1] if data.strip() else ""


def _disconnect(game: GameAddress, players: dict[str, int]) -> None:
    """SIGTERM the players and wait until each has said goodbye (its pid file is
    gone); a player that does not is killed."""
    for pid in players.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + LEAVE_TIMEOUT
    waiting = dict(players)
    while waiting and time.monotonic() < deadline:
        waiting = {name: pid for name, pid in waiting.items()
                   if (game.players_dir / f"{name}.pid").exists()}
        if waiting:
            time.sleep(0.05)  # polling interval of a deadline loop
    for name, pid in waiting.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        (game.players_dir / f"{name}.pid").unlink(missing_ok=True)


# --- one player process --------------------------------------------------------------------


class _Leave(Exception):
    """SIGTERM: leave the game politely."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Leave


def hold(state_dir: Path, server: str, name: str) -> int:
    """Be player ``name`` on ``server`` until told to leave or disconnected.

    Prints one line on stdout (``joined ...`` or ``error ...``) and then closes it;
    whoever started the player waits for that line."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        game = find_server(state_dir, server)
        conn, count = gameserver.join(game.host, game.port, name)
    except (OSError, ValueError, gameserver.ProbeError, PlayersError) as exc:
        print(f"error {exc}", flush=True)
        return 1
    pid_file = game.players_dir / f"{name}.pid"
    log = open(game.players_dir / "players.log", "a", buffering=1)  # noqa: SIM115 - until exit
    try:
        _write_atomic(pid_file, f"{os.getpid()}\n")
        _say(log, name, f"joined {server} ({game.host}:{game.port}), {count} online")
        print(f"joined {name} {count}", flush=True)
        _detach_stdio(log)
        try:
            _play(conn, log, name)
        except _Leave:
            _leave(conn, log, name)
    finally:
        conn.close()
        with contextlib.suppress(OSError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        log.close()
    return 0


def _play(conn: socket.socket, log, name: str) -> None:
    reader = gameserver.LineReader(conn)
    while True:
        try:
            line = reader.readline()
        except (OSError, ValueError) as exc:
            _say(log, name, f"connection lost: {exc}")
            return
        if line is None or line.startswith("bye"):
            _say(log, name, f"disconnected by the server ({line or 'connection closed'})")
            return
        if line.startswith("announce "):
            _say(log, name, f"heard: {line.removeprefix('announce ')}")


def _leave(conn: socket.socket, log, name: str) -> None:
    # Waits for the server's "bye", so the server has counted this player out
    # before `leave` returns.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, ValueError):
        conn.settimeout(2.0)
        conn.sendall(b"leave\n")
        reader = gameserver.LineReader(conn)
        while (line := reader.readline()) is not None and line != "bye":
            pass
    _say(log, name, "left")


def _say(log, name: str, message: str) -> None:
    log.write(f"{time.strftime('%H:%M:%S')} {name}: {message}\n")


def _detach_stdio(log) -> None:
    # Closing the pipe tells the starter we are in; later output goes to the log.
    os.dup2(log.fileno(), sys.stdout.fileno())
    os.dup2(log.fileno(), sys.stderr.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [HOLD] and len(argv) == 4:
        return hold(Path(argv[1]), argv[2], argv[3])
    parser = argparse.ArgumentParser(
        prog="python -m demo.players",
        description="Simulate players joining or leaving a demo game server.")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="the demo fleet's state directory (default: "
                             "$PATCHBAY_DEMO_DIR/fleet, or .demo/fleet as `make run` uses)")
    parser.add_argument("server", help="the demo server, e.g. gs-01")
    parser.add_argument("action", choices=["join", "leave"])
    parser.add_argument("count", metavar="N", type=player_count,
                        help=f"how many players (1-{MAX_PLAYERS})")
    args = parser.parse_args(argv)
    state_dir = (args.state_dir or default_state_dir()).resolve()
    try:
        game = find_server(state_dir, args.server)
        names = join(game, args.count) if args.action == "join" else leave(game, args.count)
        online = gameserver.player_count(game.host, game.port)
    except (OSError, gameserver.ProbeError, PlayersError) as exc:
        print(f"demo.players: {exc}", file=sys.stderr)
        return 1
    verb = "joined" if args.action == "join" else "left"
    print(f"{game.server}: {', '.join(names)} {verb}; the game server on "
          f"{game.host}:{game.port} counts {online} player{'' if online == 1 else 's'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
