"""Running: one :class:`JobRun` per running job, fresh or resumed.

The run is in three parts. The rollout (:mod:`tasks.rollout.rollout_run`) walks the
plan's batches, each worked by up to ``parallel`` worker tasks, with the gates between
them; each server is a :class:`~tasks.running.server_run.ServerRun` (its steps,
on_failure steps and version probe, over one session it owns); each step is driven by
the :mod:`step driver <tasks.running.step_driver>`. A step runs detached on its server
(see :mod:`tasks.transport.protocol`), so when the connection drops mid-step the run
reconnects with backoff and reads on from the stored byte offsets, and a run resumed
after a console restart picks every server up where its log ends: re-attaching to a
step still running, collecting one that ended meanwhile, or going on with the next
step, the next server and the next batch.

What a run writes to the log is what may be shown: the job's parameters and each step's
command with secrets masked, and every output line with the server's secret values
replaced by ``••••`` (see :mod:`tasks.planning.secrets`); only the transport gets the real
command.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from tasks.events.fencing import JobFenced
from tasks.events.resume import JobProgress
from tasks.planning.job_plan import JobPlan
from tasks.rollout.rollout_run import RolloutRun
from tasks.running import job_log
from tasks.running.context import CANCEL_POLL_SECONDS, JobWorld, RunContext
from tasks.running.output import OutputBudget

log = logging.getLogger(__name__)


@dataclass
class JobRun:
    """One running job: its plan, and the flags that reach every part of its run."""

    job_id: int
    job_uid: str
    plan: JobPlan
    world: JobWorld
    cancel: threading.Event = field(default_factory=threading.Event)
    # Set when another node took the job over: stop at once, touching no server.
    abandoned: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    # Set when a gate decision for this job was written, so a paused run need not wait
    # for its next poll.
    gate_poke: threading.Event = field(default_factory=threading.Event)
    user: str | None = None  # who started it, for the console's log (job_log)

    def run(self, progress: JobProgress | None = None) -> None:
        """Run the job to its end; ``progress`` resumes it where its log stops."""
        try:
            self.world.start_task(self._watch_cancel_requests)
            job_log.job_started(self.job_id, self.plan, self.user, progress is not None)
            finished = RolloutRun(self._context(progress), progress).run()
            job_log.job_finished(self.job_id, self.plan, self.user, finished)
        except JobFenced:
            self.abandoned.set()
            log.warning("job %s was taken over by another node; stopped running it here",
                        self.job_id)
        finally:
            self.finished.set()

    def abandon(self) -> None:
        """Another node owns the job now: stop without touching its servers."""
        self.abandoned.set()

    def _context(self, progress: JobProgress | None) -> RunContext:
        budget = OutputBudget(  # a resumed job counts on from its log
            self.world.settings.max_job_output, progress.output_bytes if progress else 0,
            frozenset(progress.output_cut) if progress else frozenset())
        return RunContext(self.job_id, self.job_uid, self.plan, self.world, self.cancel,
                          self.abandoned, self.gate_poke, budget)

    def _watch_cancel_requests(self) -> None:
        """Let a cancel requested through the database (by any console process that
        shares it) reach this run."""
        while not self.finished.wait(CANCEL_POLL_SECONDS):
            if self.cancel.is_set():
                return
            if self.world.is_cancel_requested(self.job_id):
                self.cancel.set()
                return
