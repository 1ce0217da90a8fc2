"""The job engine: plan a job, start it, cancel it, and resume this node's jobs.

The engine is handed its world (a session factory, the event log, a transport and a
task starter) and knows nothing of Flask requests or Socket.IO. Planning lives in
:mod:`tasks.planning.plan`, running in :mod:`tasks.running.job_run`, the rollout rules in
:mod:`tasks.rollout.strategy`, what a job's log says of its progress in
:mod:`tasks.events.resume` (and of a job found without its owner in
:mod:`tasks.running.recovery`), and the settings (``EngineSettings.from_config``) in
:mod:`tasks.settings`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from secrets import token_hex
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import LIVE_JOB_STATUSES, Job, JobEvent, User
from tasks.errors import PatchbayError
from tasks.events.resume import JobProgress
from tasks.events.writer import EventLog
from tasks.nodes.membership import claim_job
from tasks.planning.job_plan import HostPlan, JobPlan, stored_plan
from tasks.planning.plan import Planner
from tasks.planning.runbooks import Runbook
from tasks.planning.secrets import SecretBox, SecretUnreadable
from tasks.running.context import JobWorld
from tasks.running.job_run import JobRun
from tasks.running.recovery import interrupt, progress_of, reports_version
from tasks.settings import EngineSettings
from tasks.transport.protocol import HostSession, Target, Transport
from tasks.transport.ssh import SSHHostSession

log = logging.getLogger(__name__)

__all__ = ["EngineSettings", "HostPlan", "JobEngine", "JobPlan"]


class JobEngine:
    """Plans, starts, runs, cancels and resumes jobs.

    ``secrets`` seals the secret values a job stores (the console's, keyed by its
    SECRET_KEY, so every node sharing the database can resume the job); without it,
    a key of this engine alone."""

    def __init__(self, *, db_sessions: sessionmaker[Session], events: EventLog,
                 runbooks: Callable[[], dict[str, Runbook]],
                 start_task: Callable[..., Any], settings: EngineSettings,
                 transport: Transport | None = None, secrets: SecretBox | None = None
                 ) -> None:
        self.db_sessions = db_sessions
        self.events = events
        self.runbooks = runbooks
        self.start_task = start_task
        self.settings = settings
        self.secrets = secrets or SecretBox(token_hex(32))
        self.planner = Planner(db_sessions, runbooks, settings.default_parallel,
                               settings.known_hosts, settings.node_id, self.secrets)
        self.world = JobWorld(
            events=events, transport=transport or self._ssh_session, start_task=start_task,
            host_slots=threading.BoundedSemaphore(settings.max_concurrent_hosts),
            is_cancel_requested=self._cancel_requested, settings=settings.run_settings(),
            gate_request=self._gate_request)
        self._running: dict[int, JobRun] = {}
        self._running_lock = threading.Lock()

    # -- planning ---------------------------------------------------------------

    def plan(self, runbook: str | Runbook, params: Any, servers: list[str] | None = None,
             tags: list[str] | None = None, strategy: Any = None) -> JobPlan:
        """Validate a job request and render every command; raise :class:`PatchbayError`."""
        return self.planner.plan(runbook, params, servers, tags, strategy)

    def rerun_plan(self, job_id: int, skip: Collection[str] = ()) -> JobPlan:
        """The same job again on the servers of job ``job_id`` that did not succeed
        (but for those in ``skip``)."""
        return self.planner.rerun_plan(job_id, skip)

    # -- starting -----------------------------------------------------------------

    def start(self, plan: JobPlan, user_id: int | None, rerun_of: int | None = None,
              on_recorded: Callable[[int], None] | None = None) -> int:
        """Lock the plan's servers, record the job and start running it; returns its id.
        ``on_recorded(job_id)`` runs before any of the job's events can be published
        (the starting socket joins the job's room there, so it misses none)."""
        job = self.planner.record(plan, user_id, rerun_of)
        run = JobRun(job.id, job.uid, plan, self.world, user=self._username(user_id))
        self.events.open_job(job.id, user_id)
        if on_recorded is not None:
            on_recorded(job.id)
        self._launch(run)
        return job.id

    def _username(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        with self.db_sessions() as session:
            return session.scalar(select(User.username).where(User.id == user_id))

    def _launch(self, run: JobRun, progress: JobProgress | None = None) -> None:
        with self._running_lock:
            self._running[run.job_id] = run

        def run_and_forget() -> None:
            try:
                run.run(progress)
            finally:
                with self._running_lock:
                    self._running.pop(run.job_id, None)

        self.start_task(run_and_forget)

    # -- cancelling ---------------------------------------------------------------

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Ask a running job to stop; a finished or already-cancelling job is a no-op."""
        with self.db_sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
            status = job.status
            already = job.cancel_requested
            if status in LIVE_JOB_STATUSES and not already:
                job.cancel_requested = True
                session.commit()
        if status not in LIVE_JOB_STATUSES:
            return {"cancelled": False, "status": status,
                    "message": f"job #{job_id} already finished ({status})"}
        if already:
            return {"cancelled": False, "status": status,
                    "message": f"job #{job_id} is already being cancelled"}
        run = self._running.get(job_id)
        if run is not None:
            run.cancel.set()
        return {"cancelled": True, "status": status,
                "message": f"cancelling job #{job_id}"}

    # -- gates ----------------------------------------------------------------------

    def decide_gate(self, job_id: int, action: str, user_id: int | None) -> dict[str, Any]:
        """Promote (``"promote"``) or abort (``"abort"``) a job paused at a manual gate.

        The request is written to the job's row, where its owner (this process or
        another node) picks it up: the answer comes before the job moves on."""
        with self.db_sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
            if job.status != "paused":
                raise PatchbayError("invalid", f"job #{job_id} is not waiting at a gate "
                                    f"(it is {job.status})", "job_id")
            decided = session.execute(
                update(Job).where(Job.id == job_id, Job.status == "paused",
                                  Job.gate_request.is_(None), Job.cancel_requested.is_(False))
                .values(gate_request=action, gate_request_by_id=user_id)).rowcount
            session.commit()
        if decided != 1:
            raise PatchbayError("invalid", f"job #{job_id} is already being promoted, "
                                "aborted or cancelled", "job_id")
        run = self._running.get(job_id)
        if run is not None:
            run.gate_poke.set()
        doing = "promoting" if action == "promote" else "aborting"
        return {"job_id": job_id, "status": "paused", "message": f"{doing} job #{job_id}"}

    def _gate_request(self, job_id: int) -> tuple[str, str | None] | None:
        """The promote/abort request waiting for a paused job, with who asked."""
        with self.db_sessions() as session:
            row = session.execute(select(Job.gate_request, User.username)
                                  .outerjoin(User, User.id == Job.gate_request_by_id)
                                  .where(Job.id == job_id)).first()
        if row is None or row.gate_request is None:
            return None
        return row.gate_request, row.username

    def is_running_here(self, job_id: int) -> bool:
        return job_id in self._running

    def _cancel_requested(self, job_id: int) -> bool:
        with self.db_sessions() as session:
            return bool(session.scalar(select(Job.cancel_requested)
                                       .where(Job.id == job_id)))

    # -- resuming -----------------------------------------------------------------

    def take_over(self, job_id: int, dead_node: str, why: str) -> bool:
        """Claim a running job of a dead node and resume it here. Of several nodes
        racing for the same job exactly one gets True (see :func:`claim_job`)."""
        if job_id in self._running:
            return False
        with self.db_sessions() as session, session.begin():
            claimed = claim_job(session, job_id, dead_node, self.settings.node_id)
        if not claimed:
            return False
        log.warning("job %s: %s", job_id, why)
        self._resume(job_id, why)
        return True

    def abandon(self, job_id: int) -> None:
        """Another node took the job over: this node's run of it stops (the event log
        calls this when it finds the job's owner changed)."""
        run = self._running.get(job_id)
        if run is not None:
            run.abandon()

    def resume_owned_jobs(self, node_id: str | None = None) -> list[int]:
        """Resume the jobs a dead process of ``node_id`` (this node by default) left
        running: re-attach to their steps and carry their rollouts on."""
        owner = node_id or self.settings.node_id
        with self.db_sessions() as session:
            job_ids = list(session.scalars(select(Job.id).where(
                Job.status.in_(LIVE_JOB_STATUSES), Job.node_id == owner).order_by(Job.id)))
        resumed = []
        for job_id in job_ids:
            if job_id in self._running:
                continue
            try:
                self._resume(job_id, "the console restarted while the job was running")
            except Exception:  # noqa: BLE001 - one broken job must not stop the others
                log.exception("resuming job %s failed", job_id)
                continue
            resumed.append(job_id)
        return resumed

    def _resume(self, job_id: int, why: str) -> None:
        with self.db_sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            why_not = None
            if any(host.plan is None for host in job.hosts):
                # Recorded before plans were stored with jobs: it cannot be resumed.
                why_not = "the job was recorded by a version that cannot resume it"
            else:
                try:
                    plan = stored_plan(job, self.secrets)
                except SecretUnreadable as exc:
                    why_not = f"the job cannot be resumed: {exc.message}"
                    log.error("job %s: %s", job_id, why_not)
            if why_not is not None:
                unfinished = [(h.name, h.current_step, reports_version(h.plan))
                              for h in job.hosts if h.status in ("pending", "running")]
                finished = [h.status for h in job.hosts
                            if h.status not in ("pending", "running")]
                owner_id, last_seq = job.created_by_id, job.last_seq
                session.rollback()
                interrupt(self.events, job_id, owner_id, last_seq, unfinished, finished, why_not)
                return
            last_seq = session.scalar(select(func.max(JobEvent.seq))
                                      .where(JobEvent.job_id == job_id)) or 0
            rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)
                                   .order_by(JobEvent.seq))
            events = [row.to_dict() for row in rows]
            owner_id, uid, cancel_requested = job.created_by_id, job.uid, job.cancel_requested
            user = job.created_by.username if job.created_by else None
            if job.node_id != self.settings.node_id:
                job.node_id = self.settings.node_id
                session.commit()
        progress = progress_of(plan, events)
        self.events.open_job(job_id, owner_id, last_seq)
        under_way = sorted(name for name, host in progress.hosts.items()
                           if host.state in ("between", "in_step"))
        self.events.append(job_id, "job_recovered", None, {
            "node": self.settings.node_id, "servers": under_way, "reason": why})
        run = JobRun(job_id, uid, plan, self.world, user=user)
        if cancel_requested:
            run.cancel.set()
        self._launch(run, progress)

    def _ssh_session(self, target: Target) -> HostSession:
        return SSHHostSession(target, self.settings.connect_timeout, self.settings.kill_grace,
                              window=self.settings.ssh_window)
