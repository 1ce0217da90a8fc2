"""``make cluster``: Patchbay as several nodes on this machine, the way it is deployed.

    python -m stack.cluster

Starts, all with their data under ``.cluster/`` (or ``PATCHBAY_CLUSTER_DIR``) and none
as a system service: a private
PostgreSQL (``postgres/``) and Redis (``redis/``), migrates the database, makes sure the
admin exists, checks the runbooks, starts the demo fleet (``fleet/``) and imports it,
then two console nodes started from the shipped systemd unit (``node-1/``, ``node-2/``,
on PATCHBAY_PORT+1 and +2) and nginx with the shipped site config (``nginx/``) on
PATCHBAY_PORT (default 5000). Then it watches: a node that dies is reported and the
others keep serving (SIGHUP restarts dead nodes); Ctrl-C or SIGTERM stops everything.

Every service is our direct child in the foreground and gets its stop signal from the
kernel when this supervisor dies, even by SIGKILL (see :func:`stack.processes.dies_with_us`),
so a killed ``make cluster`` leaves nothing running and no port held.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from stack.nginx import PrivateNginx
from stack.nodes import NodeProcess
from stack.postgres import PrivatePostgres
from stack.processes import dies_with_us, free_port, stop_process
from stack.redis import PrivateRedis

PROJECT_DIR = Path(__file__).resolve().parent.parent
CLUSTER_DIR = PROJECT_DIR / ".cluster"
ADDRESS = "127.0.0.1"
NODE_COUNT = 2
FLEET_SIZE = 8
FLEET_FIRST_ADDRESS = (127, 0, 0, 11)  # demo.sshfleet's default: gs-01 on 127.0.0.11
ADMIN = "admin"

_restart_requested = threading.Event()


@dataclass
class Cluster:
    """What ``make cluster`` started, in start order."""

    port: int
    ssh_port: int
    directory: Path = CLUSTER_DIR
    password: str = ""
    postgres: PrivatePostgres | None = None
    redis: PrivateRedis | None = None
    fleet: subprocess.Popen | None = None
    nodes: list[NodeProcess] = field(default_factory=list)
    nginx: PrivateNginx | None = None

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.port}"


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, watch it until Ctrl-C or SIGTERM, stop it; the exit code."""
    del argv  # no options: everything comes from the environment, as for `make run`
    try:
        cluster = Cluster(port=_int_setting("PATCHBAY_PORT", 5000),
                          ssh_port=_int_setting("PATCHBAY_DEMO_SSH_PORT", 2222),
                          directory=Path(os.environ.get("PATCHBAY_CLUSTER_DIR")
                                         or CLUSTER_DIR).absolute())
    except ValueError as error:
        print(f"make cluster: {error}", file=sys.stderr)
        return 2
    # Set, not inherited: a shell starting us in the background makes SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: _restart_requested.set())
    try:
        _start(cluster)
        _print_banner(cluster)
        _supervise(cluster)
    except KeyboardInterrupt:
        print("\nstopping the cluster ...", flush=True)
        return 0
    except RuntimeError as error:
        print(f"\nmake cluster: {error}\n\nstopping what was started ...",
              file=sys.stderr, flush=True)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not strand any
        _stop(cluster)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _int_setting(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a port number, not {value!r}") from None


# -- starting -------------------------------------------------------------------------


def _start(cluster: Cluster) -> None:
    _require_free_ports(cluster)
    cluster.directory.mkdir(parents=True, exist_ok=True)
    cluster.password = _admin_password(cluster.directory)
    env = _shared_env(cluster)
    _migrate_and_seed(env)
    _start_fleet(cluster)
    _run_flask(env, "import-inventory", str(cluster.directory / "fleet" / "inventory.yml"))
    _start_nodes(cluster, env)
    _step("nginx", f"on port {cluster.port}")
    cluster.nginx = PrivateNginx(cluster.directory / "nginx", cluster.port,
                                 [node.port for node in cluster.nodes])
    cluster.nginx.start()


def _require_free_ports(cluster: Cluster) -> None:
    """Fail before starting anything if a port we need is taken."""
    wanted = [(ADDRESS, cluster.port, "nginx (PATCHBAY_PORT)")]
    wanted += [(ADDRESS, cluster.port + number, f"node-{number} (PATCHBAY_PORT+{number})")
               for number in range(1, NODE_COUNT + 1)]
    first = FLEET_FIRST_ADDRESS
    wanted += [(f"{first[0]}.{first[1]}.{first[2]}.{first[3] + offset}", cluster.ssh_port,
                "the demo fleet's SSH (PATCHBAY_DEMO_SSH_PORT)")
               for offset in range(FLEET_SIZE)]
    for address, port, what in wanted:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as error:
                raise RuntimeError(
                    f"{address}:{port}, for {what}, is taken ({error.strerror}): stop "
                    "what uses it, or choose other ports with PATCHBAY_PORT / "
                    "PATCHBAY_DEMO_SSH_PORT") from None


def _admin_password(directory: Path) -> str:
    """PATCHBAY_ADMIN_PASSWORD, else one generated once and kept (as `make run` does)."""
    if os.environ.get("PATCHBAY_ADMIN_PASSWORD"):
        return os.environ["PATCHBAY_ADMIN_PASSWORD"]
    return _kept_secret(directory / "admin-password", secrets.token_urlsafe(12))


def _kept_secret(path: Path, new_value: str) -> str:
    """The value in ``path``; made from ``new_value`` (mode 600) the first time."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_value + "\n")
    return path.read_text().strip()


def _shared_env(cluster: Cluster) -> dict[str, str]:
    """Start PostgreSQL and Redis; the settings every node (and the CLI) shares."""
    _step("PostgreSQL", "")
    cluster.postgres = PrivatePostgres(cluster.directory / "postgres", free_port())
    cluster.postgres.start()
    database_url = cluster.postgres.create_database("patchbay")
    _step("Redis", "")
    cluster.redis = PrivateRedis(cluster.directory / "redis", free_port())
    cluster.redis.start()
    return {
        **os.environ,
        "PATCHBAY_ENV": "production",
        "PATCHBAY_SECRET_KEY": _kept_secret(cluster.directory / "secret_key",
                                            secrets.token_hex(32)),
        "DATABASE_URL": database_url,
        "PATCHBAY_MESSAGE_QUEUE": cluster.redis.url(0),
        "PATCHBAY_RATELIMIT_STORAGE_URI": cluster.redis.url(1),
        "PATCHBAY_TRUSTED_PROXIES": "1",
        "PATCHBAY_INSTANCE_PATH": str(cluster.directory / "instance"),
        "PATCHBAY_ADMIN_PASSWORD": cluster.password,
    }


def _migrate_and_seed(env: dict[str, str]) -> None:
    _step("database", "migrating")
    _run_flask(env, "db", "upgrade", quiet=True)
    _run_flask(env, "ensure-admin", "--username", ADMIN)
    _run_flask(env, "check-runbooks")


def _run_flask(env: dict[str, str], *arguments: str, quiet: bool = False) -> None:
    """``flask --app app ARGUMENTS`` in the project; RuntimeError with its output if it
    fails."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *arguments],
                          cwd=PROJECT_DIR, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False,
                          preexec_fn=dies_with_us())
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(arguments)} failed (exit {done.returncode}):"
                           f"\n{output}")
    if output and not quiet:
        print(f"  {output}", flush=True)


def _start_fleet(cluster: Cluster, timeout: float = 60) -> None:
    """``python -m demo.sshfleet`` as `make run` starts it; wait for its ready file."""
    _step("demo fleet", f"{FLEET_SIZE} SSH game servers, port {cluster.ssh_port}")
    ready = cluster.directory / "fleet.ready"
    log_path = cluster.directory / "fleet.log"
    with open(log_path, "ab") as log:
        cluster.fleet = subprocess.Popen(
            [sys.executable, "-m", "demo.sshfleet", "--state-dir",
             str(cluster.directory / "fleet"),
             "--ssh-port", str(cluster.ssh_port), "--ready-file", str(ready), "--stop-games"],
            cwd=PROJECT_DIR, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=dies_with_us())  # it stops its games
    deadline = time.monotonic() + timeout
    while not (ready.exists() and ready.stat().st_size):
        if cluster.fleet.poll() is not None or time.monotonic() > deadline:
            state = ("exited" if cluster.fleet.poll() is not None
                     else f"was not ready after {timeout} s")
            raise RuntimeError(f"the demo fleet {state}; its log ({log_path}):\n"
                               + _tail(log_path))
        time.sleep(0.1)  # polling interval while waiting for the ready file


def _start_nodes(cluster: Cluster, env: dict[str, str]) -> None:
    for number in range(1, NODE_COUNT + 1):
        name, port = f"node-{number}", cluster.port + number
        _step(name, f"on port {port}")
        node = NodeProcess(name, port, {
            **env,
            "PATCHBAY_HOST": ADDRESS,
            "PATCHBAY_NODE_ID": name,
            "PATCHBAY_NODE_ADDRESS": f"http://{ADDRESS}:{port}",
            "PATCHBAY_INSTANCE_PATH": str(cluster.directory / name / "instance"),
        }, cluster.directory / name / "node.log")
        cluster.nodes.append(node)
        node.start()


def _step(what: str, detail: str) -> None:
    print(f"starting {what}" + (f" ({detail})" if detail else "") + " ...", flush=True)


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _shown(path: Path) -> str:
    """``path`` relative to the project when it is inside it (the default), else whole."""
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)


def _print_banner(cluster: Cluster) -> None:
    nodes = "\n".join(f"    {node.name}: {node.url}  pid {node.pid}  log "
                      f"{_shown(node.log_path)}" for node in cluster.nodes)
    first = cluster.nodes[0]
    print(f"""
  Patchbay is running as {len(cluster.nodes)} nodes behind nginx on {cluster.url}
{nodes}
  Log in as:  {ADMIN} / {cluster.password}
  PostgreSQL: {cluster.postgres.url()}
  Redis:      {cluster.redis.public_url()}  (password in {cluster.redis.password_path})
  Demo fleet: {FLEET_SIZE} SSH game servers from 127.0.0.11, port {cluster.ssh_port}
  Crash a node, e.g. {first.name} (gunicorn and its worker):  kill -9 -- -{first.pid}
  Restart dead nodes:  kill -HUP {os.getpid()}     Stop everything:  Ctrl-C
""", flush=True)


# -- watching and stopping ------------------------------------------------------------


def _supervise(cluster: Cluster) -> NoReturn:
    """Report dead nodes (the rest keep serving), restart them on SIGHUP; a service
    every node needs dying ends the cluster. Returns only by an exception."""
    reported: set[str] = set()
    while True:
        _check_services(cluster)
        for node in cluster.nodes:
            if not node.alive and node.name not in reported:
                reported.add(node.name)
                print(f"{node.name} exited (code {node.returncode}); the others keep "
                      f"serving; restart it with: kill -HUP {os.getpid()}  "
                      f"(its log: {node.log_path})", flush=True)
        if _restart_requested.wait(timeout=0.5):  # also the loop's polling interval
            _restart_requested.clear()
            _restart_dead(cluster, reported)


def _check_services(cluster: Cluster) -> None:
    services = {"PostgreSQL": cluster.postgres.process, "Redis": cluster.redis.process,
                "nginx": cluster.nginx.process, "the demo fleet": cluster.fleet}
    for name, process in services.items():
        if process is None or process.poll() is not None:
            code = process.returncode if process is not None else None
            raise RuntimeError(f"{name} exited (code {code}); the nodes cannot go on "
                               "without it")


def _restart_dead(cluster: Cluster, reported: set[str]) -> None:
    for node in cluster.nodes:
        if node.alive:
            continue
        print(f"restarting {node.name} ...", flush=True)
        try:
            node.start()
        except RuntimeError as error:
            print(error, file=sys.stderr, flush=True)
            continue
        reported.discard(node.name)
        print(f"{node.name} is back: {node.url}  pid {node.pid}", flush=True)


def _stop(cluster: Cluster) -> None:
    """Stop everything that was started, users before what they use."""
    stops = [(node.name, node.stop) for node in cluster.nodes]
    if cluster.nginx is not None:
        stops.append(("nginx", cluster.nginx.stop))
    if cluster.fleet is not None:
        stops.append(("the demo fleet", lambda: stop_process(cluster.fleet, timeout=30)))
    if cluster.redis is not None:
        stops.append(("Redis", cluster.redis.stop))
    if cluster.postgres is not None:
        stops.append(("PostgreSQL", cluster.postgres.stop))
    for name, stop in stops:
        print(f"stopping {name} ...", flush=True)
        try:
            stop()
        except (OSError, subprocess.SubprocessError, RuntimeError) as error:
            print(f"  could not stop {name}: {error}", file=sys.stderr, flush=True)
    print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
