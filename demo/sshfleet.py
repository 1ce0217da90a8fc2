"""Demo fleet: N fake game hosts served over SSH by one asyncssh process.

Stands in for real game servers on machines without OpenSSH's sshd::

    python -m demo.sshfleet --state-dir DIR --count 8 \\
        --first-address 127.0.0.11 --ssh-port 2222 [--game-port 27015] \\
        [--ready-file F] [--stop-games]

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
Each host's game server is started at startup unless one already answers.
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

from demo import builds, gameserver

log = logging.getLogger("demo.sshfleet")

BASE_RELEASE = "1.0.0"
CHUNK = 64 * 1024
GAME_START_TIMEOUT = 15.0
SHUTDOWN_GRACE = 5.0
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


def game_pid(host: DemoHost) -> int | None:
    """Pid from the host's pid file if that process is alive and is a game server."""
    try:
        pid = int(host.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # Guards against signalling an unrelated process that reused a stale pid.
    return pid if b"gameserver.py" in cmdline else None


def launch_game(host: DemoHost, game_port: int) -> None:
    """Start the host's game server detached, unless one already answers its port."""
    try:
        version = gameserver.probe_version(host.address, game_port, timeout=0)
    except gameserver.ProbeError:
        pass
    else:
        log.info("%s: game server already answering on %s:%d with %s",
                 host.name, host.address, game_port, version)
        return
    command = [
        sys.executable, str(host.root / "bin" / "gameserver.py"), "serve",
        "--host", host.address, "--port", str(game_port),
        "--version-file", str(host.root / "current" / "VERSION"),
        "--pid-file", str(host.pid_file),
    ]
    with open(host.root / "logs" / "game.log", "wb") as game_log:
        # `setsid -f` forks and returns at once: the game server gets its own
        # session and is re-parented to init, so it is reaped when a runbook
        # stops it and outlives this process (a restarted fleet reuses it).
        subprocess.run(["setsid", "-f", *command], stdin=subprocess.DEVNULL, stdout=game_log,
                       stderr=subprocess.STDOUT, cwd=host.root, env=host.command_env(),
                       check=True)
    log.info("%s: started game server on %s:%d", host.name, host.address, game_port)


async def start_games(hosts: list[DemoHost], game_port: int) -> None:
    """Make sure every host's game server answers; raises ProbeError if one never does."""
    for host in hosts:
        launch_game(host, game_port)
    await asyncio.gather(*(
        asyncio.to_thread(gameserver.probe_version, host.address, game_port, GAME_START_TIMEOUT)
        for host in hosts
    ))


async def stop_games(hosts: list[DemoHost]) -> None:
    """SIGTERM the game servers named in the pid files and wait (bounded) for them."""
    signalled = {}
    for host in hosts:
        pid = game_pid(host)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                signalled[host] = pid
                log.info("%s: sent SIGTERM to game server pid %d", host.name, pid)
    # Not `kill -0`: an exited server can stay a zombie for seconds until init
    # reaps it. game_pid() already says None once the server has removed its
    # pid file or is a zombie (empty cmdline).
    deadline = time.monotonic() + SHUTDOWN_GRACE
    while signalled and time.monotonic() < deadline:
        signalled = {host: pid for host, pid in signalled.items() if game_pid(host) == pid}
        if signalled:
            await asyncio.sleep(0.05)
    for host, pid in signalled.items():
        log.warning("%s: game server pid %d still running after SIGTERM", host.name, pid)


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


def _address_range(hosts: list[DemoHost], ssh_port: int) -> str:
    if len(hosts) == 1:
        return f"1 host on {hosts[0].address}:{ssh_port}"
    return f"{len(hosts)} hosts on {hosts[0].address}-{hosts[-1].address}:{ssh_port}"


async def run_fleet(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    state_dir = args.state_dir.resolve()
    ready_file = args.ready_file.resolve() if args.ready_file else None
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)  # a stale one would fool whoever waits
    hosts = plan_hosts(state_dir, args.count, args.first_address)
    host_keys, client_key = prepare_state(state_dir, hosts, args.ssh_port, args.game_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    fleet = Fleet(hosts, args.ssh_port, host_keys, client_key)
    try:
        await fleet.listen()
        await start_games(hosts, args.game_port)
    except (OSError, subprocess.CalledProcessError, gameserver.ProbeError) as exc:
        log.error("demo fleet failed to start: %s", exc)
        await fleet.close()
        return 1

    if ready_file is not None:
        ready = {
            "pid": os.getpid(),
            "state_dir": str(state_dir),
            "inventory": str(state_dir / "inventory.yml"),
            "known_hosts": str(state_dir / "known_hosts"),
            "client_key": str(state_dir / "client_key"),
            "hosts": [{"name": h.name, "address": h.address, "port": args.ssh_port}
                      for h in hosts],
        }
        _atomic_write(ready_file, (json.dumps(ready, indent=2) + "\n").encode())
    print(f"demo fleet ready: {_address_range(hosts, args.ssh_port)}", flush=True)

    await stop.wait()
    log.info("shutting down")
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)
    await fleet.close()
    if args.stop_games:
        await stop_games(hosts)
    log.info("demo fleet stopped")
    return 0


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
    parser.add_argument("--ssh-port", type=int, default=2222)
    parser.add_argument("--game-port", type=int, default=27015)
    parser.add_argument("--ready-file", type=Path,
                        help="written (JSON) once every listener and game server is up")
    parser.add_argument("--stop-games", action="store_true",
                        help="on exit, SIGTERM the game servers found in the pid files")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        ipaddress.IPv4Address(args.first_address) + (args.count - 1)
    except ValueError as exc:
        parser.error(f"--first-address/--count: {exc}")

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s sshfleet %(levelname)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # per-packet chatter otherwise
    return asyncio.run(run_fleet(args))


if __name__ == "__main__":
    sys.exit(main())
