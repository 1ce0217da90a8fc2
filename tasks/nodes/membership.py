"""Node membership: heartbeats, and taking over the running jobs of dead nodes.

Every console node (process) writes its row in ``nodes`` every ``heartbeat`` seconds. A
node whose last heartbeat is older than ``timeout`` is dead; each live node looks for
running jobs owned by dead nodes on every beat and hands each one to ``take_over``,
which claims it with a conditional UPDATE on the owner column (``... WHERE node_id =
<dead node>``): when several live nodes race, exactly one UPDATE matches. Heartbeats
compare wall clocks of different machines, so nodes must keep their clocks in sync (NTP);
the timeout (20 s by default) is far above any sane clock skew.

Each beat also writes what this node sees of the services it needs (``Node.health``, see
:mod:`tasks.nodes.health`): the beat itself is the database's probe (a failed beat is one
"database unreachable" line per outage, not a traceback per beat), the message queue
reports through its listener and publisher. ``checks`` run after every good beat (the
login limiter's return to its shared storage).

A node that was only slow, not dead, learns that it lost its jobs when the event log
refuses its writes for them (see :class:`tasks.events.writer.EventLog`): one writer per job,
always.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models import LIVE_JOB_STATUSES, Job, Node, utcnow
from tasks.events.write_errors import describe, is_transient
from tasks.nodes.health import Dependency, HealthState, from_row, to_row

log = logging.getLogger(__name__)

TakeOver = Callable[[int, str, str], bool]  # (job id, dead node, why) -> claimed?


@dataclass(frozen=True)
class NodeIdentity:
    """Who this node is, as its heartbeat row tells the others."""

    id: str
    address: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class NodeState:
    """One row of the Nodes page."""

    id: str
    address: str | None
    version: str | None
    started_at: datetime
    last_seen: datetime
    alive: bool
    jobs: list[int]
    health: dict[str, HealthState]  # by service: "database", "message queue" (if any)

    @property
    def seen_ago(self) -> float:
        return max(0.0, (utcnow() - self.last_seen).total_seconds())


class Membership:
    """This node's heartbeat and its watch over the others."""

    def __init__(self, sessions: sessionmaker[Session], me: NodeIdentity, *,
                 heartbeat: float, timeout: float, take_over: TakeOver,
                 start_task: Callable[..., Any], queue: Dependency | None = None,
                 checks: Sequence[Callable[[], None]] = ()) -> None:
        self.sessions = sessions
        self.me = me
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.take_over = take_over
        self.start_task = start_task
        self.database = Dependency("database")
        self.services = [self.database] + ([queue] if queue is not None else [])
        self.checks = list(checks)
        self._stop = threading.Event()

    # -- heartbeat ----------------------------------------------------------------

    def join(self) -> None:
        """Announce this node (again): a restart starts its ``started_at`` anew."""
        now = utcnow()
        with self.sessions() as session, session.begin():
            node = session.get(Node, self.me.id)
            if node is None:
                session.add(Node(id=self.me.id, address=self.me.address,
                                 version=self.me.version, started_at=now, last_seen=now,
                                 health=to_row(self.services)))
            else:
                node.address, node.version = self.me.address, self.me.version
                node.started_at = node.last_seen = now
                node.health = to_row(self.services)

    def beat(self) -> None:
        with self.sessions() as session, session.begin():
            updated = session.execute(update(Node).where(Node.id == self.me.id)
                                      .values(last_seen=utcnow(),
                                              health=to_row(self.services))).rowcount
        if not updated:  # the row was deleted by hand: announce again
            self.join()

    def start(self) -> None:
        """Join, then beat and watch in a background task until :meth:`stop`."""
        self.join()
        self.start_task(self._run)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.beat_and_watch()
            except Exception:  # noqa: BLE001 - a bug must not end the heartbeat
                log.exception("node %s: heartbeat or takeover check failed", self.me.id)

    def beat_and_watch(self) -> None:
        """One beat: the heartbeat (the database's probe), the checks, the takeover."""
        was_down = not self.database.state.ok
        try:
            self.beat()
        except Exception as error:
            if not is_transient(error):
                raise
            self.database.failed(describe(error))
            return
        self.database.succeeded()
        if was_down:
            self.beat()  # the outage just ended: show it on the Nodes page now
        for check in self.checks:
            check()
        self.take_over_dead_nodes()

    # -- takeover -----------------------------------------------------------------

    def orphaned_jobs(self) -> list[tuple[int, str, datetime]]:
        """Running jobs whose owner's heartbeat is older than the timeout:
        ``(job id, owner, owner's last heartbeat)``."""
        cutoff = utcnow() - timedelta(seconds=self.timeout)
        with self.sessions() as session:
            rows = session.execute(
                select(Job.id, Job.node_id, Node.last_seen)
                .join(Node, Node.id == Job.node_id)
                .where(Job.status.in_(LIVE_JOB_STATUSES), Job.node_id != self.me.id,
                       Node.last_seen < cutoff)
                .order_by(Job.id))
            return [(job_id, owner, seen) for job_id, owner, seen in rows]

    def take_over_dead_nodes(self) -> list[int]:
        """Claim and resume every job of a dead node; the ids this node won."""
        won = []
        for job_id, owner, last_seen in self.orphaned_jobs():
            silent = (utcnow() - last_seen).total_seconds()
            why = (f"node {owner} stopped answering (no heartbeat for {silent:.0f} s); "
                   f"node {self.me.id} took the job over")
            try:
                if self.take_over(job_id, owner, why):
                    won.append(job_id)
            except Exception:  # noqa: BLE001 - one broken job must not stop the others
                log.exception("taking over job %s from %s failed", job_id, owner)
        return won

    # -- the Nodes page -----------------------------------------------------------

    def states(self) -> list[NodeState]:
        cutoff = utcnow() - timedelta(seconds=self.timeout)
        with self.sessions() as session:
            nodes = session.scalars(select(Node).order_by(Node.id)).all()
            running = session.execute(select(Job.node_id, Job.id)
                                      .where(Job.status.in_(LIVE_JOB_STATUSES))
                                      .order_by(Job.id))
            jobs: dict[str, list[int]] = {}
            for owner, job_id in running:
                jobs.setdefault(owner, []).append(job_id)
            return [NodeState(node.id, node.address, node.version, node.started_at,
                              node.last_seen, node.last_seen >= cutoff,
                              jobs.get(node.id, []), from_row(node.health))
                    for node in nodes]


def claim_job(session: Session, job_id: int, dead_node: str, new_owner: str) -> bool:
    """Make ``new_owner`` the owner of a running job still owned by ``dead_node``; True
    for exactly one of several nodes racing for it (the UPDATE's WHERE re-checks the
    owner under the row lock)."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.node_id == dead_node,
                          Job.status.in_(LIVE_JOB_STATUSES)).values(node_id=new_owner))
    return result.rowcount == 1
