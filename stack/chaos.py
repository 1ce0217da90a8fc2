"""``make chaos``: rollouts on a whole cluster while its parts fail, then proof that
nothing was lost.

    CHAOS_SECONDS=600 CHAOS_SEED=1234 python -m stack.chaos

Starts what ``make cluster`` starts, all private and in a fresh temporary folder (never
``.cluster/``): PostgreSQL, Redis, an OpenSSH fleet of 16 servers on 127.0.0.201-216
(``tests/support/sshd_fleet.py``: real sshd, so an SSH drop is a killed session process), two
nodes from the shipped systemd unit, nginx with the shipped site. For ``CHAOS_SECONDS``
(default 600) it runs rollouts of the ``chaos`` runbook (``tests/runbooks/chaos.yml``:
numbered lines, each also kept on the server) on four groups of four servers, each job
followed by two websocket and two long-polling watchers through nginx, while
``stack.chaos_inject`` injects faults at times drawn from ``CHAOS_SEED`` (printed;
random when unset). Then it stops injecting, lets the jobs under way end, checks every
job of the database (``stack.chaos_check``), stops everything (the fleet after the
nodes) and prints one summary line:

    chaos seed=… jobs=… watchers=… reconnects=… ssh_drops=… node_kills=…
    redis_restarts=… pg_restarts=… lost=0 dup=0 mismatched_hosts=0 unfinished=0 …

Exit code 0 only if nothing was lost, duplicated or mismatched, every job ended and
succeeded, and no process of the run was left behind; 2 for a bad setting; 130 after
Ctrl-C (everything is stopped on the way out, whatever happens). A failed run keeps its
folder, with every part's log, and says where.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stack.nginx import PrivateNginx
from stack.nodes import NodeProcess
from stack.postgres import THROWAWAY, PrivatePostgres
from stack.processes import free_port
from stack.redis import PrivateRedis

PROJECT_DIR = Path(__file__).resolve().parent.parent
RUNBOOK_DIR = PROJECT_DIR / "tests" / "runbooks"
FLEET_SIZE = 16
FLEET_FIRST_ADDRESS = "127.0.0.201"
GROUPS = 4
LINES = 40  # per job and server, 0.2 s apart
NODE_TIMEOUT = 6  # s: short, so takeovers happen within a run
DRAIN_TIMEOUT = 240  # s for the jobs under way to end once the faults stop
USER = "chaos"


@dataclass
class Parts:
    """What the run started, in start order."""

    directory: Path
    postgres: PrivatePostgres | None = None
    redis: PrivateRedis | None = None
    fleet: object = None  # tests.support.sshd_fleet.SshdFleet
    nodes: list[NodeProcess] = field(default_factory=list)
    nginx: PrivateNginx | None = None


def main(argv: list[str] | None = None) -> int:
    del argv  # settings come from the environment, as for make cluster
    try:
        seconds = _setting("CHAOS_SECONDS", 600, minimum=10)
        seed = _setting("CHAOS_SEED", secrets.randbelow(10**6), minimum=0)
    except ValueError as error:
        print(f"make chaos: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    directory = Path(tempfile.mkdtemp(prefix="patchbay-chaos-"))
    directory.chmod(0o711)  # the postgres user must get through to its folder
    print(f"chaos seed={seed} seconds={seconds} dir={directory}", flush=True)
    parts = Parts(directory)
    rollouts = None
    figures: dict[str, int] = {}
    code = 1
    try:
        _start(parts)
        rollouts = _rollouts(parts, seed)
        figures, problems = _run(parts, rollouts, seed, seconds)
        for problem in problems:
            print(f"chaos: {problem}", flush=True)
        code = 0 if not problems else 1
    except KeyboardInterrupt:
        print("\nchaos: interrupted; stopping everything ...", flush=True)
        code = 130
    except (RuntimeError, TimeoutError, OSError) as error:
        print(f"chaos: {error}\nstopping everything ...", file=sys.stderr, flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not strand any
        if rollouts is not None:
            rollouts.stop.set()
            rollouts.close()
        _stop(parts, power_off="jobs" not in figures)
        figures["leftovers"] = _kill_leftovers(directory)
    if figures.get("leftovers"):
        code = code or 1
    if code in (0, 130):
        shutil.rmtree(directory, ignore_errors=True)
    else:  # the nodes' logs hold the tracebacks behind a finding
        print(f"chaos: the run's folder is kept for its logs (node-N/node.log, "
              f"fleet/sshd_0.log, postgres/, redis/, nginx/): {directory}", flush=True)
    if "jobs" in figures:
        print(summary_line(seed, figures), flush=True)
    return code


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _setting(name: str, default: int, minimum: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {number}")
    return number


SUMMARY_KEYS = ("jobs", "watchers", "reconnects", "ssh_drops", "node_kills",
                "redis_restarts", "pg_restarts", "lost", "dup", "mismatched_hosts",
                "unfinished", "failed", "nginx_reloads", "watcher_drops", "catch_ups",
                "hole_fills", "takeovers", "resumes", "ssh_reattaches", "leftovers")


def summary_line(seed: int, figures: dict[str, int]) -> str:
    """``chaos seed=… jobs=… …`` in the issue's order, then the extra figures."""
    return " ".join([f"chaos seed={seed}"]
                    + [f"{key}={figures.get(key, 0)}" for key in SUMMARY_KEYS])


# -- starting and stopping ----------------------------------------------------------


def _start(parts: Parts) -> None:
    from tests.support.live_server import prepare_database
    from tests.support.sshd_fleet import start_fleet

    directory = parts.directory
    _say("starting PostgreSQL, Redis and the OpenSSH fleet ...")
    parts.postgres = PrivatePostgres(directory / "postgres", free_port(), settings=THROWAWAY)
    parts.postgres.start()
    database_url = parts.postgres.create_database("patchbay")
    parts.redis = PrivateRedis(directory / "redis", free_port())
    parts.redis.start()
    parts.fleet = start_fleet(directory / "fleet", FLEET_SIZE, FLEET_FIRST_ADDRESS, "c")
    inventory = directory / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"servers": parts.fleet.inventory_entries()}))
    password = secrets.token_urlsafe(16)
    (directory / "password").write_text(password)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # each migration's name
    for client in ("engineio.client", "socketio.client"):  # each injected drop, again
        logging.getLogger(client).setLevel(logging.CRITICAL)
    prepare_database(directory / "seed", inventory=inventory, runbook_dir=RUNBOOK_DIR,
                     users=[(USER, password, "operator")], url=database_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PATCHBAY_ASYNC_MODE": "eventlet",
        "PATCHBAY_SECRET_KEY": secrets.token_hex(32),
        "PATCHBAY_MESSAGE_QUEUE": parts.redis.url(0),
        "PATCHBAY_RATELIMIT_STORAGE_URI": parts.redis.url(1),
        "PATCHBAY_TRUSTED_PROXIES": "1",
        "PATCHBAY_NODE_TIMEOUT": str(NODE_TIMEOUT),
        "PATCHBAY_NODE_HEARTBEAT": "0.5",
        "PATCHBAY_RUNBOOK_DIR": str(RUNBOOK_DIR),
        "PATCHBAY_KILL_GRACE": "2",
        # Every watcher is one user on one node (ip_hash), and a socket dropped under
        # its client counts until the node notices (its ping timeout): the default 20
        # refused the watchers' reconnects in a 10-minute run.
        "PATCHBAY_MAX_SOCKETS_PER_USER": "200",
    }
    for number in (1, 2):
        name = f"node-{number}"
        _say(f"starting {name} ...")
        node = NodeProcess(name, free_port(), {
            **env, "PATCHBAY_NODE_ID": name,
            "PATCHBAY_INSTANCE_PATH": str(directory / name / "instance")},
            directory / name / "node.log")
        parts.nodes.append(node)
        node.start()
    parts.nginx = PrivateNginx(directory / "nginx", free_port(),
                               [node.port for node in parts.nodes])
    parts.nginx.start()
    _say(f"nginx on {parts.nginx.url}; nodes on ports "
         f"{', '.join(str(node.port) for node in parts.nodes)}; PostgreSQL on port "
         f"{parts.postgres.port}; Redis on port {parts.redis.port}; fleet SSH on "
         f"{FLEET_FIRST_ADDRESS}-{parts.fleet.hosts[-1].address.rsplit('.', 1)[1]} "
         f"port {parts.fleet.port}")


def _stop(parts: Parts, power_off: bool) -> None:
    """Users before what they use; the fleet after the nodes. ``power_off`` (a run cut
    short): the steps still running on the servers are killed with them, as a server
    switched off would; otherwise every job has ended and any such process is a
    leftover."""
    for node in parts.nodes:
        _quietly(node.stop)
    if parts.nginx is not None:
        _quietly(parts.nginx.stop)
    if parts.fleet is not None:
        sessions = parts.fleet.session_processes()  # they outlive their listener
        _quietly(parts.fleet.stop)
        if power_off:
            sessions += leftover_processes(parts.fleet.directory)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if parts.redis is not None:
        _quietly(parts.redis.stop)
    if parts.postgres is not None:
        _quietly(parts.postgres.stop)


def _quietly(stop) -> None:
    try:
        stop()
    except (OSError, RuntimeError) as error:
        print(f"chaos: could not stop a part: {error}", file=sys.stderr, flush=True)


def leftover_processes(directory: Path) -> list[int]:
    """Processes of a run (other than this one) still there: found by the run's folder
    in their command line, working directory or environment."""
    marker = str(directory)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        proc = Path("/proc", entry)
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:  # gone meanwhile
            continue
        if marker.encode() in seen or cwd.startswith(marker):
            found.append(int(entry))
    return found


def _kill_leftovers(directory: Path) -> int:
    """What is left after stopping everything is killed, counted and named."""
    found = leftover_processes(directory)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if found:
        print(f"chaos: processes left running after stopping, killed: {found}",
              file=sys.stderr, flush=True)
    return len(found)


def _say(text: str) -> None:
    print(f"chaos: {text}", flush=True)


# -- the run --------------------------------------------------------------------------


def _rollouts(parts: Parts, seed: int):
    from sqlalchemy import create_engine

    from stack.chaos_rollouts import Rollouts
    from tests.support.live_server import login

    password = (parts.directory / "password").read_text()
    names = [host.name for host in parts.fleet.hosts]
    size = len(names) // GROUPS
    return Rollouts(
        proxy_url=parts.nginx.url,
        node_urls=lambda: [node.url for node in parts.nodes if node.alive],
        http=login(parts.nginx.url, USER, password),
        engine=create_engine(parts.postgres.url(), pool_pre_ping=True),
        groups=[names[start:start + size] for start in range(0, len(names), size)],
        lines=LINES, seed=seed)


def _run(parts: Parts, rollouts, seed: int, seconds: int) -> tuple[dict[str, int], list[str]]:
    from stack.chaos_inject import Injector

    injector = Injector(random.Random(seed), parts, rollouts.watchers, NODE_TIMEOUT, _say)
    _say(f"rollouts and faults for {seconds} s ...")
    started = time.monotonic()
    rollouts.start()
    injector.run(seconds, threading.Event())
    rollouts.stop.set()  # no new jobs; those under way end and settle
    _say(f"faults stopped after {time.monotonic() - started:.0f} s; letting the jobs "
         "under way end ...")
    drained = rollouts.join(DRAIN_TIMEOUT)
    figures, problems = _check(parts, rollouts)
    if not drained:
        problems.append(f"jobs still under way {DRAIN_TIMEOUT} s after the faults stopped")
    problems += rollouts.errors
    counts = injector.counts
    figures.update(ssh_drops=counts["ssh_drop"], node_kills=counts["node_kill"],
                   redis_restarts=counts["redis_restart"], pg_restarts=counts["pg_restart"],
                   nginx_reloads=counts["nginx_reload"], watcher_drops=counts["watcher_drop"])
    return figures, problems


def _check(parts: Parts, rollouts) -> tuple[dict[str, int], list[str]]:
    """Every job of the database, with the watchers of those the run followed."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from models import Job, JobEvent
    from stack.chaos_check import check_job

    followed = {rollout.job_id: rollout for rollout in rollouts.rollouts}
    roots = {host.name: host.root for host in parts.fleet.hosts}
    figures = dict.fromkeys(("jobs", "watchers", "lost", "dup", "mismatched_hosts",
                             "unfinished", "failed"), 0)
    problems: list[str] = []
    with Session(rollouts.engine) as session:
        for job in session.scalars(select(Job).order_by(Job.id)):
            stored = [event.to_dict() for event in session.scalars(
                select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.seq))]
            rollout = followed.get(job.id)
            watchers = rollout.watchers if rollout is not None else []
            printed = {host.name: _printed(roots[host.name], job.params["tag"])
                       for host in job.hosts}
            check = check_job(job.id, job.status, stored,
                              [watcher.by_seq() for watcher in watchers], printed,
                              int(job.params["lines"]))
            figures["jobs"] += 1
            figures["watchers"] += len(watchers)
            figures["reconnects"] = figures.get("reconnects", 0) + sum(
                max(0, watcher.connects - 1) for watcher in watchers)
            figures["catch_ups"] = figures.get("catch_ups", 0) + sum(
                watcher.catch_ups for watcher in watchers)
            figures["hole_fills"] = figures.get("hole_fills", 0) + sum(
                watcher.hole_fills for watcher in watchers)
            types = [event["type"] for event in stored]
            recovered = [event["data"].get("reason", "") for event in stored
                         if event["type"] == "job_recovered"]
            taken = sum("stopped answering" in reason for reason in recovered)
            figures["takeovers"] = figures.get("takeovers", 0) + taken
            figures["resumes"] = figures.get("resumes", 0) + len(recovered) - taken
            figures["ssh_reattaches"] = (figures.get("ssh_reattaches", 0)
                                         + types.count("host_reconnected"))
            figures["lost"] += check.lost
            figures["dup"] += check.dup
            figures["mismatched_hosts"] += len(check.mismatched_hosts)
            figures["unfinished"] += 0 if check.finished else 1
            if check.finished and job.status != "succeeded":
                figures["failed"] += 1
                check.problems.append(f"ended {job.status}: " + "; ".join(
                    f"{host.name} {host.status} ({host.reason})" for host in job.hosts
                    if host.status != "succeeded"))
            problems += [f"job {job.id}: {problem}" for problem in check.problems]
    return figures, problems


def _printed(root: Path, tag: str) -> list[str]:
    """What the server printed for the job: its own copy of the step's lines."""
    path = Path(root) / f"chaos-{tag}.out"
    return path.read_text().splitlines() if path.exists() else []


if __name__ == "__main__":
    sys.exit(main())
