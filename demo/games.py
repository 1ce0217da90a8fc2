"""The demo fleet's own game servers and simulated players: starting each host's game
server and waiting until that very process answers, finding this state directory's
processes by their arguments, and stopping them with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from demo import gameserver, players, ports
from demo.hosts import DemoHost

log = logging.getLogger("demo.sshfleet")

GAME_START_TIMEOUT = 15.0
SHUTDOWN_GRACE = 5.0


def game_script(host: DemoHost) -> str:
    """The path a host's game server runs as (the fleet's and the runbook's alike)."""
    return str(host.root / "bin" / "gameserver.py")


def game_processes(host: DemoHost) -> list[int]:
    """Pids of the processes serving this host's game (``gameserver.py serve``)."""
    return [pid for pid, what in own_processes(host.root.parent.parent, [host]).items()
            if what.endswith("game server")]


def own_processes(state_dir: Path, hosts: list[DemoHost]) -> dict[int, str]:
    """This fleet's game servers and simulated players now running: pid -> what it is.

    Found by their arguments, which name this state directory's paths: a host's
    ``bin/gameserver.py`` with ``serve``, or ``demo.players _hold STATE_DIR``."""
    scripts = {game_script(host): host.name for host in hosts}
    found = {}
    for entry in ports.PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        args = ports.arguments(int(entry.name))
        names = [scripts[arg] for arg in args if arg in scripts]
        if names and "serve" in args:
            found[int(entry.name)] = f"{names[0]}'s game server"
        elif "demo.players" in args and players.HOLD in args and str(state_dir) in args:
            found[int(entry.name)] = f"simulated player {args[-1]}"
    return found


def game_pid(host: DemoHost) -> int | None:
    """Pid from the host's pid file if that process is alive and is its game server."""
    try:
        pid = int(host.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    # Guards against trusting an unrelated process that reused a stale pid (a
    # zombie's arguments are empty).
    args = ports.arguments(pid)
    return pid if game_script(host) in args and "serve" in args else None


def launch_game(host: DemoHost, game_port: int) -> None:
    """Start the host's game server detached, in a session of its own."""
    command = [
        sys.executable, game_script(host), "serve",
        "--host", host.address, "--port", str(game_port),
        "--version-file", str(host.root / "current" / "VERSION"),
        "--pid-file", str(host.pid_file),
    ]
    with open(host.root / "logs" / "game.log", "wb") as game_log:
        # `setsid -f` forks and returns at once: the game server gets its own
        # session and is re-parented to init, so it is reaped when a runbook
        # stops it. The fleet finds it by its arguments and stops it on the way out.
        subprocess.run(["setsid", "-f", *command], stdin=subprocess.DEVNULL, stdout=game_log,
                       stderr=subprocess.STDOUT, cwd=host.root, env=host.command_env(),
                       check=True)
    log.info("%s: started game server on %s:%d", host.name, host.address, game_port)


class GameStartError(Exception):
    """A host's own game server did not come up; the message says what happened."""


def wait_for_own_game(host: DemoHost, game_port: int, timeout: float) -> str:
    """Wait until the game server this fleet started answers; return its version.

    GameStartError if it exits first, does not answer in time, or if what answers
    on its address:port is another process."""
    where = f"{host.address}:{game_port}"
    deadline = time.monotonic() + timeout
    while True:
        pid = game_pid(host)
        try:
            version = gameserver.probe_version(host.address, game_port, timeout=0)
        except gameserver.ProbeError:
            version = None
        if version is not None and pid is not None:
            owner = ports.holder(host.address, game_port)
            if owner.pid != pid:
                raise GameStartError(f"{host.name}: {where} is answered by "
                                     f"{owner.describe()}, not by its own game server")
            return version
        if not game_processes(host):
            raise GameStartError(f"{host.name}: its game server exited before answering "
                                 f"on {where}: {_last_line(host.root / 'logs' / 'game.log')}")
        if time.monotonic() > deadline:
            raise GameStartError(f"{host.name}: its game server did not answer on {where} "
                                 f"within {timeout:g} s")
        time.sleep(0.05)  # polling interval of a deadline loop


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError as exc:
        return f"(cannot read {path.name}: {exc.strerror})"
    return lines[-1] if lines else f"({path.name} is empty)"


async def start_games(hosts: list[DemoHost], game_port: int) -> None:
    """Start every host's game server and wait until each answers (GameStartError)."""
    for host in hosts:
        launch_game(host, game_port)
    await asyncio.gather(*(
        asyncio.to_thread(wait_for_own_game, host, game_port, GAME_START_TIMEOUT)
        for host in hosts
    ))


async def stop_own_processes(state_dir: Path, hosts: list[DemoHost]) -> None:
    """SIGTERM this fleet's simulated players, then its game servers, each group
    waited for (bounded); whatever is still there after SHUTDOWN_GRACE is killed."""
    for kind in ("simulated player", "game server"):
        group = {pid: what for pid, what in own_processes(state_dir, hosts).items()
                 if kind in what}
        await _terminate(group)


async def _terminate(group: dict[int, str]) -> None:
    started = {pid: ports.arguments(pid) for pid in group}
    for pid, what in group.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            log.info("sent SIGTERM to %s (pid %d)", what, pid)
    # Gone once its arguments are (a zombie has none) or are another process's.
    deadline = time.monotonic() + SHUTDOWN_GRACE
    waiting = dict(started)
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling interval of a deadline loop
        waiting = {pid: args for pid, args in waiting.items() if ports.arguments(pid) == args}
    for pid in waiting:
        log.warning("%s (pid %d) still running %g s after SIGTERM; killing it",
                    group[pid], pid, SHUTDOWN_GRACE)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
