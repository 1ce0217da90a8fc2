"""The chaos run's faults, at random times drawn from the seed.

Each kind comes at its own rate (``RATES``, so many per second of the run, at least
once), at random times:

- ``watcher_drop``: a connected watcher loses its connection (``ChaosWatcher.drop``);
- ``ssh_drop``: an sshd session process serving a console's logged-in SSH connection is
  killed (a child of the listening sshd: the connection drops mid-step, as a network
  would);
- ``node_kill``: ``kill -9`` of a node's process group (one node at a time, so one
  keeps serving); it is started again 2 s to 2x the node timeout later, so sometimes
  before the other node takes its jobs over and sometimes after;
- ``redis_restart``: Redis stopped and started on the same port;
- ``pg_restart``: PostgreSQL fast shutdown (SIGINT) and start;
- ``nginx_reload``: SIGHUP to nginx.

Faults run one after another in the calling thread, which must be the main thread:
services started from a thread get its end as their parent-death signal
(``stack.processes.dies_with_us``).
"""

from __future__ import annotations

import heapq
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RATES = {  # faults per second of the run
    "watcher_drop": 1.1,  # ~660 in the default 10 minutes (the issue asks for 500)
    "ssh_drop": 1 / 6,
    "node_kill": 1 / 45,
    "redis_restart": 1 / 60,
    "pg_restart": 1 / 60,
    "nginx_reload": 1 / 15,
}
KINDS = tuple(RATES)


def schedule(rng: random.Random, seconds: float) -> list[tuple[float, str]]:
    """When each fault comes, seconds from the start: ``(time, kind)`` in time order.
    Each kind comes ``rate x seconds`` times (at least once), at uniform random times
    in the run's first 95 %, so a run of any length gets its share of each."""
    return sorted((rng.uniform(0.02, 0.95) * seconds, kind) for kind, rate in RATES.items()
                  for _ in range(max(1, round(rate * seconds))))


@dataclass
class Injector:
    """Runs the schedule against the parts; ``counts`` says how many of each were made
    (a fault with nothing to act on, such as a watcher drop when none is connected, is
    not counted)."""

    rng: random.Random
    parts: object  # stack.chaos.Parts
    watchers: Callable[[], list]
    node_timeout: float
    say: Callable[[str], None]
    counts: Counter = field(default_factory=Counter)
    _pending: list[tuple[float, int, str, object]] = field(default_factory=list)
    _order: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, seconds: float, stop: threading.Event) -> None:
        """Inject for ``seconds`` (or until ``stop``), then bring every node back."""
        start = time.monotonic()
        for moment, kind in schedule(self.rng, seconds):
            self._at(start + moment, kind)
        while self._pending and not stop.is_set():
            due, _, kind, target = self._pending[0]
            if stop.wait(max(0.0, min(due - time.monotonic(), 0.5))):
                break
            if time.monotonic() < due:
                continue
            heapq.heappop(self._pending)
            getattr(self, f"_{kind}")(target)
        self.restore()

    def restore(self, timeout: float = 120) -> None:
        """Every node up again (a restart still pending is done now)."""
        deadline = time.monotonic() + timeout
        for node in self.parts.nodes:
            while not node.alive:
                try:
                    node.start()
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)  # pause between attempts of a deadline loop

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def _at(self, when: float, kind: str, target: object = None) -> None:
        self._order += 1
        heapq.heappush(self._pending, (when, self._order, kind, target))

    # -- the faults -------------------------------------------------------------

    def _watcher_drop(self, _target: object) -> None:
        connected = [w for w in self.watchers() if w.client.connected]
        if not connected:
            return
        watcher = self.rng.choice(connected)
        # A long-polling drop waits for its old connection to close: not on this thread.
        threading.Thread(target=self._drop, args=(watcher,), daemon=True).start()

    def _drop(self, watcher) -> None:
        try:
            if watcher.drop():
                self._count("watcher_drop")
        except Exception as error:  # noqa: BLE001 - the watcher reports its own state
            self.say(f"a watcher of job {watcher.job_id} could not reconnect: {error!r}")

    def _ssh_drop(self, _target: object) -> None:
        sessions = [pid for pid in self.parts.fleet.session_processes() if _logged_in(pid)]
        if not sessions:
            return
        pid = self.rng.choice(sorted(sessions))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # its connection ended meanwhile
            return
        self._count("ssh_drop")

    def _node_kill(self, _target: object) -> None:
        alive = [node for node in self.parts.nodes if node.alive]
        if len(alive) < len(self.parts.nodes):
            return  # one down already: the other must keep serving
        node = self.rng.choice(alive)
        node.kill9()
        self._count("node_kill")
        delay = self.rng.uniform(2, 2 * self.node_timeout)
        self.say(f"killed {node.name} (kill -9); starting it again in {delay:.1f} s")
        self._at(time.monotonic() + delay, "node_start", node)

    def _node_start(self, node) -> None:
        try:
            node.start()
        except RuntimeError as error:  # e.g. PostgreSQL restarting: try again soon
            self.say(f"{node.name} did not start ({str(error).splitlines()[0]}); again in 2 s")
            self._at(time.monotonic() + 2, "node_start", node)

    def _redis_restart(self, _target: object) -> None:
        self.parts.redis.stop()
        self.parts.redis.start()
        self._count("redis_restart")

    def _pg_restart(self, _target: object) -> None:
        self.parts.postgres.stop()
        self.parts.postgres.start()
        self._count("pg_restart")

    def _nginx_reload(self, _target: object) -> None:
        self.parts.nginx.reload()
        self._count("nginx_reload")


def _logged_in(session: int) -> bool:
    """Whether an sshd session process serves a logged-in connection: it, or for a
    non-root user its unprivileged child, is titled ``sshd: USER@notty`` (before the
    login, ``[priv]``, ``[net]`` or ``[preauth]``). A drop then is one mid-step, not a
    refused login."""
    try:
        children = Path(f"/proc/{session}/task/{session}/children").read_text().split()
        return any(b"@" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in (str(session), *children))
    except OSError:  # gone meanwhile
        return False
