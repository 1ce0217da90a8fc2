"""The chaos run's load: rollouts one after another on each group of servers, each
followed by watchers over both transports through nginx until every watcher holds the
whole stored log.

Each group runs in a thread of its own. A job is started on a node picked at random
(directly, so both nodes own jobs; a refused or failed start is tried again); the job's
watchers connect through nginx. Job states are read from PostgreSQL, and every error of
a part restarting (a node, PostgreSQL, Redis, nginx) is waited out, never fatal.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from models import Job, JobEvent
from stack.chaos_check import RUNNING
from stack.chaos_watch import ChaosWatcher

TRANSPORTS = ("websocket", "websocket", "polling", "polling")  # a job's watchers
POLL = 0.25  # s between looks at a job's state
TAIL_WAIT = 5.0  # s after the job ended before a watcher missing its tail catches up
SETTLE_TIMEOUT = 60.0  # s after the job ended for every watcher to hold its whole log


@dataclass
class Rollout:
    """One job the run started, and its watchers."""

    job_id: int
    tag: str
    servers: list[str]
    watchers: list[ChaosWatcher] = field(default_factory=list)
    settled: bool = False


@dataclass
class Rollouts:
    """Starts and follows rollouts until ``stop`` is set; ``rollouts`` lists them all."""

    proxy_url: str
    node_urls: Callable[[], list[str]]  # the nodes that are up right now
    http: requests.Session  # logged in
    engine: object  # SQLAlchemy engine of the console's database
    groups: list[list[str]]
    lines: int
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    rollouts: list[Rollout] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for number, group in enumerate(self.groups):
            thread = threading.Thread(target=self._run_group, args=(number, group),
                                      name=f"chaos-group-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for every group's last rollout to settle; False if one is still going."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def watchers(self) -> list[ChaosWatcher]:
        with self._lock:
            return [watcher for rollout in self.rollouts if not rollout.settled
                    for watcher in rollout.watchers]

    def close(self) -> None:
        with self._lock:
            every = [watcher for rollout in self.rollouts for watcher in rollout.watchers]
        for watcher in every:
            watcher.client.shutdown()
            if watcher.client.connected:
                watcher.client.disconnect()

    # -- one group ----------------------------------------------------------------

    def _run_group(self, number: int, servers: list[str]) -> None:
        rng = random.Random(f"{self.seed}-{number}")
        count = 0
        while not self.stop.is_set():
            count += 1
            started = self._start_job(rng, f"s{self.seed}g{number}j{count}", servers)
            if started is None:
                return
            job_id, tag = started
            rollout = Rollout(job_id, tag, servers)
            with self._lock:
                self.rollouts.append(rollout)
            for transport in TRANSPORTS:
                watcher = self._watch(job_id, transport)
                if watcher is not None:
                    rollout.watchers.append(watcher)
            self._follow(rollout)

    def _start_job(self, rng: random.Random, tag_stem: str,
                   servers: list[str]) -> tuple[int, str] | None:
        """Start the job on a node that is up; retried until it is started or the run
        stops. The job id and its tag, or None once the run stops.

        A start whose answer was lost (a node killed after its commit, a timeout under
        load) may still have made a job, and it runs: the checker reads every job of
        the database, not only these. The retries are refused while it holds the
        servers, and the first one let in after it makes a second job. So every
        attempt has a tag of its own (``…a1``, ``…a2``): two jobs sharing a tag would
        append to the same copy on the server, which then holds both jobs' lines."""
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            tag = f"{tag_stem}a{attempt}"
            payload = {"runbook": "chaos",
                       "params": {"lines": str(self.lines), "tag": tag},
                       "servers": servers}
            urls = self.node_urls()
            if urls:
                url = rng.choice(urls)
                try:
                    response = self.http.post(f"{url}/api/jobs", json=payload, timeout=15)
                    if response.status_code == 201:
                        return response.json()["job_id"], tag
                except (requests.RequestException, ValueError, KeyError):
                    pass
            self.stop.wait(0.5)  # a node, PostgreSQL or a server lock: try again soon
        return None

    def _watch(self, job_id: int, transport: str) -> ChaosWatcher | None:
        """A watcher through nginx, with a session of its own (the run's login)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            http = requests.Session()
            http.cookies.update(self.http.cookies)
            http.headers.update(self.http.headers)
            try:
                return ChaosWatcher(self.proxy_url, http, job_id, transport)
            except Exception as error:  # noqa: BLE001 - socketio raises several kinds
                last = error
                time.sleep(0.5)  # nginx or the node behind it restarting
        self._note(f"job {job_id}: no {transport} watcher could connect: {last}")
        return None

    def _follow(self, rollout: Rollout) -> None:
        """Until the job has ended and every watcher holds its whole log (or
        ``SETTLE_TIMEOUT`` has passed since it ended: the checker reports the rest)."""
        ended_at: float | None = None
        last_seq = 0
        while True:
            for watcher in rollout.watchers:
                watcher.fill_hole()
            now = time.monotonic()
            if ended_at is None:
                last_seq = self._ended(rollout.job_id)
                if last_seq:
                    ended_at = next_catch_up = now + TAIL_WAIT
            else:
                behind = [w for w in rollout.watchers if not w.holds(last_seq)]
                if not behind or now - ended_at > SETTLE_TIMEOUT:
                    break
                if now > next_catch_up:
                    next_catch_up = now + TAIL_WAIT
                    for watcher in behind:
                        if not any(seq > watcher.contiguous() for seq in watcher.seqs()):
                            self._guarded(watcher.catch_up, rollout.job_id)
            time.sleep(POLL)
        for watcher in rollout.watchers:
            self._guarded(watcher.close, rollout.job_id)
        rollout.settled = True

    def _ended(self, job_id: int) -> int:
        """The job's last seq once it has ended (a final status, ``job_finished``
        stored); 0 before, or while the database is away."""
        try:
            with Session(self.engine) as session:
                job = session.scalar(select(Job).where(Job.id == job_id))
                if job is None or job.status in RUNNING:
                    return 0
                last = session.scalar(select(JobEvent).where(JobEvent.job_id == job_id)
                                      .order_by(JobEvent.seq.desc()).limit(1))
                return last.seq if last is not None and last.type == "job_finished" else 0
        except SQLAlchemyError:
            return 0

    def _guarded(self, action: Callable[[], object], job_id: int) -> None:
        try:
            action()
        except Exception as error:  # noqa: BLE001 - a watcher's trouble is reported, not fatal
            self._note(f"job {job_id}: {action.__name__} failed: {error!r}")

    def _note(self, error: str) -> None:
        with self._lock:
            self.errors.append(error)
