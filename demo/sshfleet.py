"""Demo fleet: N fake game hosts served over SSH by one asyncssh process.

Stands in for real game servers on machines without OpenSSH's sshd::

    python -m demo.sshfleet --state-dir DIR --count 8 \\
        --first-address 127.0.0.11 --ssh-port 2222 [--game-port 27015] \\
        [--ready-file F] [--check] [--for-make-run]

Host i listens on first-address + (i - 1) (Linux routes all of 127.0.0.0/8 to
loopback, so no interface setup is needed) and behaves like a minimal sshd:
public-key auth with ``DIR/client_key`` only (any user name), and each exec
request runs ``/bin/sh -c COMMAND`` as a real subprocess in its own session,
with the host's directory as cwd and HOME, stdout and stderr streamed
separately, and exit-status or exit-signal reported. Shells, ptys and
subsystems are refused.

``DIR`` keeps everything between runs: keys (generated once), ``known_hosts``,
``inventory.yml`` for the console, the build mirror ``mirror/`` (see
demo/builds.py), one tree per host under ``hosts/`` (``bin/gameserver.py``,
``bin/builds.py``, ``etc/demo-host.env``, ``releases/``, ``current``, ``run/``,
``logs/``), and ``players/`` for the simulated players of ``python -m demo.players``.
Hosts differ a little in download speed and game load time, as a
real fleet does; ``etc/demo-host.env`` tells the demo runbook each host's values.

The fleet owns its processes. It starts only if every SSH and game address:port it
would listen on is free; otherwise it refuses (exit 3), naming each one and the
process holding it, and starts nothing (``--check`` does only that check). It then
starts each host's own game server and waits until that very process answers. On
SIGTERM/SIGINT, or a failed start, it stops the commands it runs, then the simulated
players and game servers of this state directory (whoever started them: the fleet, a
runbook's start step, ``demo.players``), waiting for each with a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import yaml

from demo import builds, gameserver, players, ports

log = logging.getLogger("demo.sshfleet")

BASE_RELEASE = "1.0.0"
CHUNK = 64 * 1024
GAME_START_TIMEOUT = 15.0
SHUTDOWN_GRACE = 5.0
EXIT_TAKEN = 3  # an address:port the fleet needs is held by another process
# Per host, cycled: a 20 MiB build then takes 7.7-11.8 s to download, and the
# game server 1.5-3 s to load.
LINK_MIB_PER_S = (2.4, 1.9, 2.2, 1.7, 2.6, 2.0, 1.8, 2.3)
GAME_LOAD_SECONDS = (1.5, 2.5, 2.0, 3.0)


@dataclass(frozen=True)
class DemoHost:
    """One fake game host: where it listens and where its files live."""

    index: int  # 1-based
    name: str
    address: str
    root: Path
    host_key_path: Path

    @property
    def tags(self) -> list[str]:
        """Inventory tags: regions alternate so tag filters have something to do."""
        tags = ["demo", "eu" if self.index % 2 else "us"]
        return tags + ["canary"] if self.index == 1 else tags

    @property
    def link_mib_per_s(self) -> float:
        """How fast this host downloads builds from the mirror."""
        return LINK_MIB_PER_S[(self.index - 1) % len(LINK_MIB_PER_S)]

    @property
    def game_load_seconds(self) -> float:
        """How long this host's game server loads before it answers."""
        return GAME_LOAD_SECONDS[(self.index - 1) % len(GAME_LOAD_SECONDS)]

    @property
    def pid_file(self) -> Path:
        """Pid file of this host's game server (written by the game server)."""
        return self.root / "run" / "game.pid"

    def command_env(self) -> dict[str, str]:
        """Environment for commands run on this host: clean, like a fresh login."""
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.root),
            "PATCHBAY_DEMO_HOST": self.name,
        }


def plan_hosts(state_dir: Path, count: int, first_address: str) -> list[DemoHost]:
    """Describe ``count`` hosts with consecutive addresses from ``first_address``."""
    first = ipaddress.IPv4Address(first_address)
    hosts = []
    for index in range(1, count + 1):
        name = f"gs-{index:02d}"
        hosts.append(DemoHost(
            index=index,
            name=name,
            address=str(first + index - 1),
            root=state_dir / "hosts" / name,
            host_key_path=state_dir / "host_keys" / name,
        ))
    return hosts


# --- state directory ----------------------------------------------------------------


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    # Readers (the console, tests) may look while the fleet restarts.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)  # O_CREAT's mode is filtered by the umask
    os.replace(tmp, path)


def load_or_create_key(path: Path, comment: str) -> asyncssh.SSHKey:
    """Read the ed25519 key at ``path``, generating it (and ``.pub``) on first use."""
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _atomic_write(path, key.export_private_key(), 0o600)
    _atomic_write(path.with_name(path.name + ".pub"), key.export_public_key(), 0o600)
    return key


def _known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def write_known_hosts(path: Path, host_keys: dict[str, asyncssh.SSHKey],
                      hosts: list[DemoHost], ssh_port: int) -> None:
    """Write an OpenSSH-format known_hosts file (paramiko's load_host_keys reads it)."""
    lines = ["# Generated by demo/sshfleet.py: host keys of the demo fleet."]
    for host in hosts:
        algorithm, blob = host_keys[host.name].export_public_key().decode().split()[:2]
        lines.append(f"{_known_hosts_name(host.address, ssh_port)} {algorithm} {blob}")
    _atomic_write(path, ("\n".join(lines) + "\n").encode())


def write_inventory(path: Path, hosts: list[DemoHost], ssh_port: int, game_port: int,
                    client_key: Path, known_hosts: Path) -> None:
    """Write the inventory the console imports."""
    inventory = {
        "known_hosts": str(known_hosts),
        "servers": [
            {
                "name": host.name,
                "host": host.address,
                "port": ssh_port,
                "user": "demo",
                "key": str(client_key),
                "tags": host.tags,
                "vars": {"root": str(host.root), "game_port": game_port},
            }
            for host in hosts
        ],
    }
    header = "# Generated by demo/sshfleet.py; rewritten on every fleet start.\n"
    _atomic_write(path, (header + yaml.safe_dump(inventory, sort_keys=False)).encode())


def write_host_env(host: DemoHost, mirror: Path) -> None:
    """Write ``etc/demo-host.env``, the host's settings that the demo runbook reads."""
    lines = [
        "# Written by demo/sshfleet.py at every fleet start: how this demo host behaves.",
        "# Where builds are downloaded from (demo/builds.py), at most how many MiB/s,",
        "# and how many seconds the game server spends loading before it answers.",
        f"DEMO_BUILD_MIRROR={shlex.quote(str(mirror))}",
        f"DEMO_LINK_MIB_PER_S={host.link_mib_per_s}",
        f"DEMO_GAME_LOAD_SECONDS={host.game_load_seconds}",
    ]
    _atomic_write(host.root / "etc" / "demo-host.env", ("\n".join(lines) + "\n").encode())


def prepare_host_dir(host: DemoHost, mirror: Path) -> None:
    """Create the host's tree; an existing deployment (``current``) is left as is."""
    for sub in ("bin", "etc", "run", "logs", f"releases/{BASE_RELEASE}"):
        (host.root / sub).mkdir(parents=True, exist_ok=True)
    # Refreshed every start so hosts pick up changes to the demo's scripts.
    shutil.copyfile(gameserver.__file__, host.root / "bin" / "gameserver.py")
    shutil.copyfile(builds.__file__, host.root / "bin" / "builds.py")
    write_host_env(host, mirror)
    version_file = host.root / "releases" / BASE_RELEASE / "VERSION"
    if not version_file.exists():
        version_file.write_text(f"{BASE_RELEASE}\n")
    current = host.root / "current"
    if not current.is_symlink():
        current.symlink_to(f"releases/{BASE_RELEASE}")


def prepare_state(state_dir: Path, hosts: list[DemoHost], ssh_port: int,
                  game_port: int) -> tuple[dict[str, asyncssh.SSHKey], asyncssh.SSHKey]:
    """Create or refresh everything under ``state_dir``; return (host keys, client key)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    client_key_path = state_dir / "client_key"
    client_key = load_or_create_key(client_key_path, "patchbay-demo-client")
    host_keys = {host.name: load_or_create_key(host.host_key_path, f"patchbay-demo-{host.name}")
                 for host in hosts}
    mirror = state_dir / "mirror"
    mirror.mkdir(exist_ok=True)
    for host in hosts:
        prepare_host_dir(host, mirror)
    known_hosts = state_dir / "known_hosts"
    write_known_hosts(known_hosts, host_keys, hosts, ssh_port)
    write_inventory(state_dir / "inventory.yml", hosts, ssh_port, game_port,
                    client_key_path, known_hosts)
    return host_keys, client_key


# --- game servers -------------------------------------------------------------------


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


# --- SSH ----------------------------------------------------------------------------


def _one_line(command: str, limit: int = 160) -> str:
    flat = " ".join(command.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


async def _pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter) -> None:
    """Forward a command's output pipe to an SSH stream as it is produced."""
    client_gone = False
    while chunk := await source.read(CHUNK):
        if client_gone:
            continue
        try:
            sink.write(chunk)
            await sink.drain()
        except (OSError, asyncssh.Error):
            # Keep draining after a disconnect so the command never blocks on
            # a full pipe; it runs to completion as it would under sshd.
            client_gone = True


async def _feed_stdin(source: asyncssh.SSHReader, sink: asyncio.StreamWriter) -> None:
    """Forward the client's stdin to the command; close it on EOF."""
    try:
        while chunk := await source.read(CHUNK):
            sink.write(chunk)
            await sink.drain()
    except (OSError, asyncssh.Error):
        pass  # the command exited without reading its input, or the client left
    finally:
        sink.close()


class Fleet:
    """The SSH side: one listener per host, commands run as local subprocesses."""

    def __init__(self, hosts: list[DemoHost], ssh_port: int,
                 host_keys: dict[str, asyncssh.SSHKey], client_key: asyncssh.SSHKey) -> None:
        self.hosts = hosts
        self.ssh_port = ssh_port
        self._host_keys = host_keys
        self._authorized = asyncssh.import_authorized_keys(
            client_key.export_public_key().decode())
        self._listeners: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._commands: dict[int, asyncio.Task] = {}  # pid -> handler task

    async def listen(self) -> None:
        """Open every host's listener; raises OSError if an address is taken."""
        for host in self.hosts:
            self._listeners.append(await asyncssh.create_server(
                functools.partial(_HostServer, self, host),
                host.address, self.ssh_port,
                server_host_keys=[self._host_keys[host.name]],
                authorized_client_keys=self._authorized,
                process_factory=functools.partial(self._run_exec, host),
                encoding=None,  # commands' output is passed through as bytes
                allow_pty=False,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_scp=False,
            ))

    async def close(self) -> None:
        """Stop listening, SIGTERM running commands, then drop the connections."""
        for listener in self._listeners:
            listener.close()
        for pid in self._commands:
            _signal_group(pid, signal.SIGTERM)
        if self._commands:
            # Lets the handlers report exit statuses before connections go away.
            await asyncio.wait(list(self._commands.values()), timeout=SHUTDOWN_GRACE)
        for conn in list(self._connections):
            conn.close()
        for listener in self._listeners:
            await listener.wait_closed()

    def connection_opened(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.add(conn)

    def connection_closed(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(conn)

    async def _run_exec(self, host: DemoHost, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        if command is None:
            process.stderr.write(b"demo fleet: only exec requests are supported "
                                 b"(no shells or subsystems)\n")
            process.exit(1)
            return
        # With a zero high-water mark drain() waits until output is really
        # sent, so the exit status never overtakes the command's last output.
        process.channel.set_write_buffer_limits(high=0)
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=host.root, env=host.command_env(),
                start_new_session=True,  # like sshd: the command leads its own session
            )
        except OSError as exc:
            log.warning("%s: cannot run command: %s", host.name, exc)
            process.stderr.write(f"demo fleet: cannot run command: {exc}\n".encode())
            process.exit(127)
            return
        log.info("%s: pid %d started: %s", host.name, proc.pid, _one_line(command))
        self._commands[proc.pid] = asyncio.current_task()
        feeder = asyncio.create_task(_feed_stdin(process.stdin, proc.stdin))
        try:
            await asyncio.gather(_pump(proc.stdout, process.stdout),
                                 _pump(proc.stderr, process.stderr))
            returncode = await proc.wait()
        finally:
            feeder.cancel()
            del self._commands[proc.pid]
        elapsed = time.monotonic() - started
        if returncode < 0:
            signame = _signal_name(-returncode)
            log.info("%s: pid %d killed by SIG%s after %.2fs",
                     host.name, proc.pid, signame, elapsed)
            process.exit_with_signal(signame)
        else:
            log.info("%s: pid %d exited %d after %.2fs", host.name, proc.pid, returncode, elapsed)
            process.exit(returncode)


def _signal_name(signum: int) -> str:
    # RFC 4254 names signals without the "SIG" prefix.
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


class _HostServer(asyncssh.SSHServer):
    """Per-connection callbacks: bookkeeping and one log line per connection."""

    def __init__(self, fleet: Fleet, host: DemoHost) -> None:
        self._fleet = fleet
        self._host = host
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._fleet.connection_opened(conn)
        peer_host, peer_port = conn.get_extra_info("peername")[:2]
        log.info("%s: connection from %s:%s", self._host.name, peer_host, peer_port)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._fleet.connection_closed(self._conn)
        log.info("%s: connection closed%s", self._host.name, f" ({exc})" if exc else "")


# --- entry point --------------------------------------------------------------------


@dataclass(frozen=True)
class Wording:
    """How messages name the fleet's settings: its options, or ``make run``'s variables."""

    prog: str
    ssh_port: str
    game_port: str
    first_address: str
    verb: str


OPTIONS = Wording("demo.sshfleet", "--ssh-port", "--game-port", "--first-address",
                  "pass another")
MAKE_RUN = Wording("make run", "PATCHBAY_DEMO_SSH_PORT", "PATCHBAY_DEMO_GAME_PORT",
                   "PATCHBAY_DEMO_FIRST_ADDRESS", "set")


def taken_addresses(hosts: list[DemoHost], ssh_port: int, game_port: int,
                    wording: Wording) -> list[str]:
    """One refusal per SSH or game address:port of the fleet that it cannot listen on,
    naming the process that holds it."""
    refusals = []
    for host in hosts:
        for port, setting in ((ssh_port, wording.ssh_port), (game_port, wording.game_port)):
            where = f"{host.address}:{port}"
            try:
                taken = ports.in_use(host.address, port)
            except OSError as exc:
                refusals.append(f"{wording.prog}: cannot listen on {where}: {exc.strerror}; "
                                f"{wording.verb} {wording.first_address}")
                continue
            if taken:
                refusals.append(
                    f"{wording.prog}: {where} is already in use by "
                    f"{ports.holder(host.address, port).describe()}; stop it, or "
                    f"{wording.verb} {setting}")
    return refusals


def _address_range(hosts: list[DemoHost], ssh_port: int) -> str:
    if len(hosts) == 1:
        return f"1 host on {hosts[0].address}:{ssh_port}"
    return f"{len(hosts)} hosts on {hosts[0].address}-{hosts[-1].address}:{ssh_port}"


def _write_ready(ready_file: Path, state_dir: Path, hosts: list[DemoHost],
                 ssh_port: int, game_port: int) -> None:
    ready = {
        "pid": os.getpid(),
        "state_dir": str(state_dir),
        "inventory": str(state_dir / "inventory.yml"),
        "known_hosts": str(state_dir / "known_hosts"),
        "client_key": str(state_dir / "client_key"),
        "game_port": game_port,
        "hosts": [{"name": h.name, "address": h.address, "port": ssh_port} for h in hosts],
    }
    _atomic_write(ready_file, (json.dumps(ready, indent=2) + "\n").encode())


async def run_fleet(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    state_dir = args.state_dir.resolve()
    ready_file = args.ready_file.resolve() if args.ready_file else None
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)  # a stale one would fool whoever waits
    hosts = plan_hosts(state_dir, args.count, args.first_address)
    if refusals := taken_addresses(hosts, args.ssh_port, args.game_port, args.wording):
        print("\n".join(refusals), file=sys.stderr, flush=True)
        return EXIT_TAKEN
    host_keys, client_key = prepare_state(state_dir, hosts, args.ssh_port, args.game_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    fleet = Fleet(hosts, args.ssh_port, host_keys, client_key)
    try:
        try:
            await fleet.listen()
            await start_games(hosts, args.game_port)
        except (OSError, subprocess.CalledProcessError, GameStartError) as exc:
            log.error("demo fleet failed to start: %s", exc)
            return 1
        if ready_file is not None:
            _write_ready(ready_file, state_dir, hosts, args.ssh_port, args.game_port)
        print(f"demo fleet ready: {_address_range(hosts, args.ssh_port)}, game servers on "
              f"port {args.game_port}", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
        await fleet.close()
        await stop_own_processes(state_dir, hosts)
    log.info("demo fleet stopped")
    return 0


def _settings_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the addresses and ports asked for (ports made ints), or None."""
    names = args.wording
    for attr, name in (("ssh_port", names.ssh_port), ("game_port", names.game_port)):
        value = getattr(args, attr)
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            return f"{name} must be a port number from 1 to 65535, not {value!r}"
        setattr(args, attr, int(value))
    if args.ssh_port == args.game_port:
        return (f"{names.ssh_port} and {names.game_port} are both {args.ssh_port}; "
                "they must differ")
    if args.count < 1:
        return "--count must be at least 1"
    try:
        ipaddress.IPv4Address(args.first_address) + (args.count - 1)
    except ValueError as exc:
        return f"{names.first_address} must be an IPv4 address with room for " \
               f"{args.count} hosts after it: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m demo.sshfleet",
        description="Serve a fleet of fake game hosts over SSH for the Patchbay demo.")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="keys, inventory and host trees live here (kept between runs)")
    parser.add_argument("--count", type=int, default=8, help="number of hosts (default 8)")
    parser.add_argument("--first-address", default="127.0.0.11",
                        help="address of gs-01; later hosts count up from it")
    parser.add_argument("--ssh-port", default="2222")
    parser.add_argument("--game-port", default="27015")
    parser.add_argument("--ready-file", type=Path,
                        help="written (JSON) once every listener and game server is up")
    parser.add_argument("--check", action="store_true",
                        help="only check that every address:port is free: exit 0, or 3 "
                             "naming what holds them (starts nothing)")
    parser.add_argument("--for-make-run", action="store_true",
                        help="name make run's PATCHBAY_DEMO_* variables in messages")
    # The fleet always stops its game servers now; kept for older command lines.
    parser.add_argument("--stop-games", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.wording = MAKE_RUN if args.for_make_run else OPTIONS
    if problem := _settings_problem(args):
        print(f"{args.wording.prog}: {problem}", file=sys.stderr)
        return 2
    if args.check:
        hosts = plan_hosts(args.state_dir.resolve(), args.count, args.first_address)
        refusals = taken_addresses(hosts, args.ssh_port, args.game_port, args.wording)
        print("\n".join(refusals), file=sys.stderr, end="\n" if refusals else "")
        return EXIT_TAKEN if refusals else 0

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s sshfleet %(levelname)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # per-packet chatter otherwise
    return asyncio.run(run_fleet(args))


if __name__ == "__main__":
    sys.exit(main())
