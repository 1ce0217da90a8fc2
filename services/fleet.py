"""The fleet as the console shows it, and the probe that keeps reachability current.

A fleet row is a server's summary plus the job holding it (its ``ServerLock``) and why
it was last found unreachable. Rows change when a job takes or releases a server (job
events, see :func:`servers_touched`) and when the reachability probe finds a server's
SSH port newly open or closed.

The probe is a plain TCP connect to each server's SSH port, with a timeout and at most
``concurrency`` connects at once; it runs every ``interval`` seconds only while
``wanted()`` says someone is watching, and needs nothing of Flask.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Server, ServerLock, utcnow

log = logging.getLogger(__name__)

NAMES_PER_QUERY = 500
HOST_EVENTS = frozenset({"host_started", "host_finished"})


def fleet_rows(session: Session, names: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Rows for the named servers (all when ``names`` is None), sorted by name.

    ``rev`` is when the row was read: a client keeps the newest row per server, so an
    update overtaken by a fresher snapshot cannot roll a row back."""
    if names is not None and not names:
        return []
    batches: Iterable[list[str] | None] = [None] if names is None else [
        sorted(names)[i:i + NAMES_PER_QUERY] for i in range(0, len(names), NAMES_PER_QUERY)]
    rev = time.time()
    rows = []
    for batch in batches:
        servers = select(Server).order_by(Server.name)
        if batch is not None:
            servers = servers.where(Server.name.in_(batch))
        found = session.scalars(servers).all()
        holders = dict(session.execute(select(ServerLock.server_id, ServerLock.job_id).where(
            ServerLock.server_id.in_([s.id for s in found]))).all())
        rows.extend({**server.summary(), "held_by": holders.get(server.id),
                     "reach_error": server.reach_error, "rev": rev} for server in found)
    rows.sort(key=lambda row: row["name"])
    return rows


def servers_touched(events: Iterable[dict[str, Any]]) -> set[str]:
    """Servers whose fleet row these job events change: all of a starting job's servers
    (locked when it started), and each server as it starts or finishes."""
    names: set[str] = set()
    for event in events:
        if event["type"] == "job_started":
            names.update(event["data"].get("servers") or [])
        elif event["type"] in HOST_EVENTS and event["host"]:
            names.add(event["host"])
    return names


@dataclass
class ProbeSettings:
    interval: float = 30.0  # seconds between rounds
    timeout: float = 3.0  # seconds per TCP connect
    concurrency: int = 50  # connects at once


def check_port(host: str, port: int, timeout: float) -> str | None:
    """None if ``host:port`` accepts a TCP connection, else why not (one short line)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return "connection refused"
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    except OSError as exc:
        return (exc.strerror or str(exc))[:200]


class ReachabilityProbe:
    """Checks every server's SSH port in rounds and publishes the rows that changed."""

    def __init__(self, *, sessions: sessionmaker[Session],
                 publish: Callable[[list[dict[str, Any]], str], None],
                 start_task: Callable[..., Any], wanted: Callable[[], bool],
                 settings: ProbeSettings,
                 check: Callable[[str, int, float], str | None] = check_port) -> None:
        self.sessions = sessions
        self.publish = publish
        self.start_task = start_task
        self.wanted = wanted
        self.settings = settings
        self.check = check
        self._lock = threading.Lock()
        self._running = False
        self._wake = threading.Event()

    def ensure_running(self, now: bool = False) -> None:
        """Start the rounds if they are not running; ``now`` asks for a round at once."""
        with self._lock:
            if self._running:
                if now:
                    self._wake.set()
                return
            self._running = True
        self.start_task(self._loop)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self.wanted():
                    self._running = False
                    return
            self._wake.clear()
            try:
                self.check_all()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("reachability round failed")
            self._wake.wait(self.settings.interval)

    def check_all(self) -> list[dict[str, Any]]:
        """One round: check every server, store the results, publish changed rows."""
        with self.sessions() as session:
            servers = session.execute(select(Server.id, Server.name, Server.host,
                                             Server.port, Server.reachable,
                                             Server.reach_error)).all()
        # Stored in a String(255) column (PostgreSQL refuses longer ones).
        results = [error[:255] if error else error
                   for error in self._check_many([(s.host, s.port) for s in servers])]
        checked_at = utcnow()
        changed = {s.id: s.name for s, error in zip(servers, results, strict=True)
                   if (s.reachable, s.reach_error) != (error is None, error)}
        with self.sessions() as session, session.begin():
            session.execute(update(Server).values(last_checked=checked_at,
                                                  updated_at=Server.updated_at))
            for server, error in zip(servers, results, strict=True):
                if server.id in changed:
                    session.execute(update(Server).where(Server.id == server.id).values(
                        reachable=error is None, reach_error=error))
        with self.sessions() as session:
            rows = fleet_rows(session, list(changed.values()))
        self.publish(rows, checked_at.isoformat() + "Z")
        return rows

    def _check_many(self, targets: list[tuple[str, int]]) -> list[str | None]:
        results: list[str | None] = [None] * len(targets)
        queue = deque(enumerate(targets))
        workers = min(self.settings.concurrency, len(targets))
        done = threading.Semaphore(0)

        def worker() -> None:
            try:
                while True:
                    try:
                        index, (host, port) = queue.popleft()
                    except IndexError:
                        return
                    results[index] = self.check(host, port, self.settings.timeout)
            finally:
                done.release()

        for _ in range(workers):
            self.start_task(worker)
        for _ in range(workers):
            done.acquire()
        return results
