"""The job engine: plan a job, lock its servers, run it in background tasks, cancel it.

The engine is handed its world (a session factory, the event log, an SSH transport
factory and a task starter) and knows nothing of Flask requests or Socket.IO.
Each job runs in one coordinator task; each batch is worked by up to ``parallel``
worker tasks, each taking the next server and running its steps over one SSH
connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import FINISHED_HOST_STATUSES, Job, JobHost, Server, ServerLock
from tasks.adhoc import KIND as ADHOC
from tasks.adhoc import CommandRunbook
from tasks.errors import PatchbayError
from tasks.events import EventLog
from tasks.output import HostOutput
from tasks.runbooks import HostContext, RenderedStep, Runbook, RunbookError
from tasks.ssh import SSHError, SSHSession, Target
from tasks.strategy import Strategy, parse_strategy

log = logging.getLogger(__name__)

SessionFactory = Callable[[Target], SSHSession]
CANCEL_POLL_SECONDS = 1.0  # how soon a cancel requested by another process is seen


@dataclass
class HostPlan:
    """One server's part of a planned job: where to connect and what will run."""

    server_id: int
    name: str
    target: Target
    steps: list[RenderedStep]
    on_failure: list[RenderedStep]


@dataclass
class JobPlan:
    runbook: Runbook
    params: dict[str, str]
    strategy: Strategy
    hosts: list[HostPlan]

    def preview(self) -> dict[str, Any]:
        """What ``job:plan`` shows: per server, the exact commands that will run."""
        sizes = self.strategy.batch_sizes(len(self.hosts))
        return {
            "runbook": self.runbook.name,
            "params": self.params,
            "strategy": self.strategy.model_dump(),
            "batches": _split(self.hosts, sizes, lambda h: h.name),
            "hosts": [
                {"name": h.name,
                 "steps": [{"name": s.name, "command": s.command} for s in h.steps],
                 "on_failure": [{"name": s.name, "command": s.command}
                                for s in h.on_failure]}
                for h in self.hosts
            ],
        }


@dataclass
class _RunState:
    """What the running tasks of one job share."""

    job_id: int
    plan: JobPlan
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    failures: int = 0
    stop_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class EngineSettings:
    default_parallel: int = 10
    max_concurrent_hosts: int = 500
    connect_timeout: float = 10
    step_timeout: float = 3600
    kill_grace: float = 5
    flush_interval: float = 0.1
    flush_lines: int = 500
    node_id: str = "local"
    known_hosts: str | None = None  # for servers whose inventory names none


class JobEngine:
    """Plans, starts, runs and cancels jobs."""

    def __init__(self, *, db_sessions: sessionmaker[Session], events: EventLog,
                 runbooks: Callable[[], dict[str, Runbook]],
                 start_task: Callable[..., Any], settings: EngineSettings,
                 ssh_session: SessionFactory | None = None) -> None:
        self.db_sessions = db_sessions
        self.events = events
        self.runbooks = runbooks
        self.start_task = start_task
        self.settings = settings
        self.ssh_session = ssh_session or self._default_ssh_session
        self._host_slots = threading.BoundedSemaphore(settings.max_concurrent_hosts)
        self._running: dict[int, _RunState] = {}
        self._start_lock = threading.Lock()

    # -- planning ---------------------------------------------------------------

    def plan(self, runbook: str | Runbook, params: Any, servers: list[str] | None = None,
             tags: list[str] | None = None, strategy: Any = None) -> JobPlan:
        """Validate a job request and render every command; raise :class:`PatchbayError`.

        ``runbook`` is a runbook's name, or a runbook object built in memory (an ad-hoc
        command's :class:`~tasks.adhoc.CommandRunbook`)."""
        try:
            book = runbook if isinstance(runbook, Runbook) else self.runbooks().get(runbook)
        except RunbookError as exc:
            raise PatchbayError("runbook_invalid", str(exc), "runbook") from None
        if book is None:
            raise PatchbayError("unknown_runbook", f"no runbook named {runbook!r}", "runbook")
        values = book.validate_params(params)
        chosen_strategy = parse_strategy(strategy, book.spec.strategy,
                                         self.settings.default_parallel)
        with self.db_sessions() as session:
            chosen = self._select_servers(session, servers, tags)
            hosts = []
            for server in chosen:
                context = HostContext(server.name, server.host, server.port, server.user,
                                      dict(server.vars or {}))
                hosts.append(HostPlan(
                    server.id, server.name,
                    Target(server.name, server.host, server.port, server.user,
                           server.key_path, server.known_hosts or self.settings.known_hosts,
                           accept_new_host_keys=server.host_key_policy == "accept-new"),
                    book.render(values, context), book.render_on_failure(values, context)))
        return JobPlan(book, values, chosen_strategy, hosts)

    @staticmethod
    def _select_servers(session: Session, names: list[str] | None,
                        tags: list[str] | None) -> list[Server]:
        if names and tags:
            raise PatchbayError("invalid", "give either servers or tags, not both", "servers")
        if names:
            if len(set(names)) != len(names):
                raise PatchbayError("invalid", "a server is listed twice", "servers")
            found = {s.name: s for s in session.scalars(
                select(Server).where(Server.name.in_(names)))}
            missing = [name for name in names if name not in found]
            if missing:
                raise PatchbayError("unknown_server", f"unknown server {missing[0]!r}",
                                    "servers")
            return [found[name] for name in names]
        if tags:
            wanted = set(tags)
            chosen = [s for s in session.scalars(select(Server).order_by(Server.name))
                      if wanted & set(s.tags or [])]
            if not chosen:
                raise PatchbayError("unknown_server",
                                    f"no server has any of the tags {', '.join(sorted(wanted))}",
                                    "tags")
            return chosen
        raise PatchbayError("invalid", "choose at least one server (servers or tags)",
                            "servers")

    # -- starting -----------------------------------------------------------------

    def start(self, plan: JobPlan, user_id: int | None, rerun_of: int | None = None) -> int:
        """Lock the plan's servers, record the job and start running it; returns its id."""
        sizes = plan.strategy.batch_sizes(len(plan.hosts))
        batch_of = _batch_numbers(sizes)
        with self._start_lock, self.db_sessions() as session:
            self._refuse_busy(session, [h.server_id for h in plan.hosts])
            job = Job(runbook=plan.runbook.name, kind=plan.runbook.kind, params=plan.params,
                      strategy=plan.strategy.model_dump(), status="running",
                      created_by_id=user_id, node_id=self.settings.node_id,
                      rerun_of_id=rerun_of)
            session.add(job)
            session.flush()
            for position, host in enumerate(plan.hosts):
                session.add(JobHost(job_id=job.id, server_id=host.server_id, name=host.name,
                                    position=position, batch=batch_of[position]))
                session.add(ServerLock(server_id=host.server_id, job_id=job.id))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                self._refuse_busy(session, [h.server_id for h in plan.hosts])
                raise
            job_id = job.id
        state = _RunState(job_id, plan)
        self._running[job_id] = state
        self.events.open_job(job_id, user_id)
        self.start_task(self._run_job, state)
        return job_id

    @staticmethod
    def _refuse_busy(session: Session, server_ids: list[int]) -> None:
        held = session.execute(
            select(Server.name, ServerLock.job_id).join(ServerLock,
                                                        ServerLock.server_id == Server.id)
            .where(ServerLock.server_id.in_(server_ids)).order_by(Server.name)).first()
        if held is not None:
            raise PatchbayError("server_busy",
                                f"server {held.name} is held by running job #{held.job_id}",
                                "servers")

    def rerun_plan(self, job_id: int) -> JobPlan:
        """A plan with the same runbook, parameters and strategy as job ``job_id``, on
        its servers that did not succeed."""
        with self.db_sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
            if job.status in ("running", "succeeded"):
                raise PatchbayError("invalid",
                                    f"job #{job_id} is {job.status}: nothing to re-run",
                                    "job_id")
            names = [host.name for host in job.hosts if host.status != "succeeded"]
            runbook: str | Runbook = CommandRunbook() if job.kind == ADHOC else job.runbook
            params, strategy = dict(job.params), dict(job.strategy)
        return self.plan(runbook, params, names, strategy=strategy)

    # -- cancelling ---------------------------------------------------------------

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Ask a running job to stop; a finished or already-cancelling job is a no-op."""
        with self.db_sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
            status = job.status
            already = job.cancel_requested
            if status == "running" and not already:
                job.cancel_requested = True
                session.commit()
        if status != "running":
            return {"cancelled": False, "status": status,
                    "message": f"job #{job_id} already finished ({status})"}
        if already:
            return {"cancelled": False, "status": "running",
                    "message": f"job #{job_id} is already being cancelled"}
        state = self._running.get(job_id)
        if state is not None:
            state.cancel.set()
        return {"cancelled": True, "status": "running",
                "message": f"cancelling job #{job_id}"}

    def is_running_here(self, job_id: int) -> bool:
        return job_id in self._running

    # -- crash recovery -----------------------------------------------------------

    def recover_interrupted(self) -> list[int]:
        """Mark this node's jobs left ``running`` by a dead process as ``interrupted``."""
        with self.db_sessions() as session:
            jobs = session.scalars(select(Job).where(Job.status == "running",
                                                     Job.node_id == self.settings.node_id)
                                   ).all()
            found = [(job.id, job.created_by_id, job.last_seq) for job in jobs]
        recovered = []
        for job_id, owner, last_seq in found:
            if job_id in self._running:
                continue
            self.events.open_job(job_id, owner, last_seq)
            counts: dict[str, int] = {}
            with self.db_sessions() as session:
                hosts = session.scalars(select(JobHost).where(JobHost.job_id == job_id)).all()
                unfinished = [(h.name, h.current_step) for h in hosts
                              if h.status not in FINISHED_HOST_STATUSES]
                for h in hosts:
                    if h.status in FINISHED_HOST_STATUSES:
                        counts[h.status] = counts.get(h.status, 0) + 1
            for name, step in unfinished:
                where = f" during step {step!r}" if step else ""
                self.events.append(job_id, "host_finished", name, {
                    "status": "interrupted", "failed_step": step,
                    "reason": f"the console stopped while this server was in progress{where}"})
                counts["interrupted"] = counts.get("interrupted", 0) + 1
            self.events.append(job_id, "job_finished", None, {
                "status": "interrupted", "counts": counts,
                "reason": "the console process stopped before the job finished"})
            recovered.append(job_id)
        if recovered:
            self.events.wait_written()
        return recovered

    # -- running ------------------------------------------------------------------

    def _watch_cancel_requests(self, state: _RunState) -> None:
        """Let a cancel requested through the database (by any console process that
        shares it) reach this run."""
        while not state.finished.wait(CANCEL_POLL_SECONDS):
            if state.cancel.is_set():
                return
            with self.db_sessions() as session:
                if session.scalar(select(Job.cancel_requested).where(Job.id == state.job_id)):
                    state.cancel.set()
                    return

    def _run_job(self, state: _RunState) -> None:
        self.start_task(self._watch_cancel_requests, state)
        plan = state.plan
        started = time.monotonic()
        sizes = plan.strategy.batch_sizes(len(plan.hosts))
        batches = _split(plan.hosts, sizes, lambda h: h)
        self.events.append(state.job_id, "job_started", None, {
            "runbook": plan.runbook.name, "kind": plan.runbook.kind, "params": plan.params,
            "strategy": plan.strategy.model_dump(),
            "servers": [h.name for h in plan.hosts],
            "batches": [[h.name for h in batch] for batch in batches],
            "steps": [s.name for s in plan.runbook.spec.steps],
        })
        results: dict[str, str] = {}
        limit = plan.strategy.failure_limit(len(plan.hosts))
        try:
            for index, batch in enumerate(batches):
                if state.cancel.is_set() or state.stop_reason:
                    break
                self.events.append(state.job_id, "batch_started", None,
                                   {"batch": index, "servers": [h.name for h in batch]})
                self._run_batch(state, batch, results, limit)
                if index == 0 and len(batches) > 1 and state.failures and not state.stop_reason:
                    state.stop_reason = "the canary batch failed"
            for host in plan.hosts:
                if host.name not in results:
                    status = "cancelled" if state.cancel.is_set() else "skipped"
                    reason = ("job cancelled before this server started" if status == "cancelled"
                              else f"not started: {state.stop_reason}")
                    self.events.append(state.job_id, "host_finished", host.name,
                                       {"status": status, "reason": reason})
                    results[host.name] = status
        except Exception as exc:  # noqa: BLE001 - a bug must still end the job visibly
            log.exception("job %s crashed", state.job_id)
            for host in plan.hosts:
                if host.name not in results:
                    self.events.append(state.job_id, "host_finished", host.name,
                                       {"status": "failed", "reason": f"internal error: {exc}"})
                    results[host.name] = "failed"
        counts: dict[str, int] = {}
        for status in results.values():
            counts[status] = counts.get(status, 0) + 1
        if state.cancel.is_set():
            final = "cancelled"
        elif counts.get("succeeded", 0) == len(plan.hosts):
            final = "succeeded"
        else:
            final = "failed"
        finished: dict[str, Any] = {"status": final, "counts": counts,
                                    "duration": round(time.monotonic() - started, 3)}
        if state.stop_reason:
            finished["reason"] = state.stop_reason
        self.events.append(state.job_id, "job_finished", None, finished)
        self.events.wait_written()
        self._running.pop(state.job_id, None)
        state.finished.set()

    def _run_batch(self, state: _RunState, batch: list[HostPlan], results: dict[str, str],
                   limit: int | None) -> None:
        queue = deque(batch)
        workers = min(state.plan.strategy.parallel, len(batch))
        done = threading.Semaphore(0)

        def worker() -> None:
            try:
                while True:
                    with state.lock:
                        if not queue or state.cancel.is_set() or state.stop_reason:
                            return
                        host = queue.popleft()
                    with self._host_slots:
                        status = self._run_host_safely(state, host)
                    with state.lock:
                        results[host.name] = status
                        if status == "failed":
                            state.failures += 1
                            if limit is not None and state.failures >= limit \
                                    and not state.stop_reason:
                                state.stop_reason = (
                                    f"{state.failures} server(s) failed "
                                    f"(max_failures {state.plan.strategy.max_failures})")
            finally:
                done.release()

        for _ in range(workers):
            self.start_task(worker)
        for _ in range(workers):
            done.acquire()

    def _run_host_safely(self, state: _RunState, host: HostPlan) -> str:
        """A bug in running one server fails that server visibly, never the job."""
        try:
            return self._run_host(state, host)
        except Exception as exc:  # noqa: BLE001
            log.exception("job %s: server %s crashed", state.job_id, host.name)
            self.events.append(state.job_id, "host_finished", host.name, {
                "status": "failed", "reason": f"internal error: {type(exc).__name__}: {exc}"})
            return "failed"

    def _run_host(self, state: _RunState, host: HostPlan) -> str:
        """Run one server's steps over one connection; returns its final status."""
        job_id = state.job_id
        started = time.monotonic()
        self.events.append(job_id, "host_started", host.name, {"address": host.target.address})
        session = self.ssh_session(host.target)
        outcome: dict[str, Any]
        try:
            session.connect()
        except SSHError as exc:
            outcome = {"status": "failed", "failed_step": "connect", "reason": str(exc)}
        else:
            outcome = self._run_steps(state, host, session)
        finally:
            session.close()
        outcome["duration"] = round(time.monotonic() - started, 3)
        self.events.append(job_id, "host_finished", host.name, outcome)
        return outcome["status"]

    def _run_steps(self, state: _RunState, host: HostPlan,
                   session: SSHSession) -> dict[str, Any]:
        facts: dict[str, str] = {}
        for index, step in enumerate(host.steps):
            if state.cancel.is_set():
                return {"status": "cancelled", "reason": "job cancelled", "facts": facts}
            result = self._run_step(state, host, session, step, index, "steps")
            if result["status"] == "ok":
                if step.capture and result["last_line"] is not None:
                    facts[step.capture] = result["last_line"]
                continue
            outcome = {"status": "cancelled" if result["status"] == "cancelled" else "failed",
                       "failed_step": step.name, "exit_code": result["exit_code"],
                       "reason": result["reason"], "facts": facts}
            if outcome["status"] == "failed" and host.on_failure and not result["lost"]:
                for rollback_index, rollback in enumerate(host.on_failure):
                    done = self._run_step(state, host, session, rollback, rollback_index,
                                          "on_failure")
                    if done["status"] != "ok":
                        outcome["reason"] += f"; on_failure step {rollback.name!r} also failed"
                        break
            return outcome
        return {"status": "succeeded", "facts": facts}

    def _run_step(self, state: _RunState, host: HostPlan, session: SSHSession,
                  step: RenderedStep, index: int, phase: str) -> dict[str, Any]:
        job_id = state.job_id
        timeout = step.timeout or state.plan.strategy.timeout or self.settings.step_timeout
        self.events.append(job_id, "step_started", host.name, {
            "step": step.name, "index": index, "phase": phase, "command": step.command,
            "timeout": timeout})
        output = HostOutput(self.events, job_id, host.name, step.name,
                            self.settings.flush_interval, self.settings.flush_lines)
        started = time.monotonic()
        try:
            result = session.run(step.command, output.line, timeout=timeout,
                                 cancel=None if phase == "on_failure" else state.cancel,
                                 tick=output.tick)
            lost = result.lost
            error = None
        except SSHError as exc:
            result, lost, error = None, True, str(exc)
        output.flush()
        duration = round(time.monotonic() - started, 3)
        exit_code = result.exit_code if result else None
        if result and result.stopped == "timeout":
            status, reason = "failed", f"timed out after {timeout:g} s"
        elif result and result.stopped == "cancel":
            status, reason = "cancelled", "stopped: job cancelled"
        elif lost:
            status, reason = "failed", error or "SSH connection dropped during the command"
        elif exit_code == 0:
            status, reason = "ok", None
        elif exit_code == -1:
            status, reason = "failed", f"step {step.name!r} was killed by a signal"
        else:
            status, reason = "failed", f"step {step.name!r} exited with code {exit_code}"
        self.events.append(job_id, "step_finished", host.name, {
            "step": step.name, "index": index, "phase": phase, "status": status,
            "exit_code": exit_code, "duration": duration, "reason": reason})
        return {"status": status, "exit_code": exit_code, "reason": reason,
                "last_line": output.last_stdout_line, "lost": lost}

    def _default_ssh_session(self, target: Target) -> SSHSession:
        return SSHSession(target, self.settings.connect_timeout, self.settings.kill_grace)


def _batch_numbers(sizes: list[int]) -> list[int]:
    numbers: list[int] = []
    for index, size in enumerate(sizes):
        numbers.extend([index] * size)
    return numbers


def _split(items: list[Any], sizes: list[int], key: Callable[[Any], Any]) -> list[list[Any]]:
    batches, start = [], 0
    for size in sizes:
        batches.append([key(item) for item in items[start:start + size]])
        start += size
    return batches

