"""What every part of one job's run shares: the engine's world, the job's identity and
its stop flags, and the few things each part asks of them (write an event, name a run
directory, work in parallel)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.events.fencing import JobFenced
from tasks.events.resume import HEALTH, ON_FAILURE, PROBE, STEPS, StepPosition
from tasks.events.writer import EventLog
from tasks.planning.job_plan import JobPlan
from tasks.running.output import OutputBudget
from tasks.settings import RunSettings
from tasks.transport.protocol import StepLocation, Transport

CANCEL_POLL_SECONDS = 1.0  # how soon a cancel or gate decision written elsewhere is seen
# A step's run directory is named after its phase and index: "3", "f0" (on_failure),
# "h4" (a health step run again by a soak gate); a wait step's probes add "w<n>-<id>".
PHASE_KEYS = {STEPS: "", ON_FAILURE: "f", HEALTH: "h", PROBE: "v"}


@dataclass
class JobWorld:
    """The engine's world, as a run needs it."""

    events: EventLog
    transport: Transport
    start_task: Callable[..., Any]
    host_slots: threading.BoundedSemaphore
    is_cancel_requested: Callable[[int], bool]
    settings: RunSettings
    # A paused job's promote/abort request, with who made it (see JobEngine.decide_gate).
    gate_request: Callable[[int], tuple[str, str | None] | None] = lambda _job_id: None


@dataclass
class RunContext:
    """One job's run as its rollout, servers and steps see it. The flags are the
    :class:`~tasks.running.job_run.JobRun`'s own: a cancel or takeover reaches them all."""

    job_id: int
    job_uid: str
    plan: JobPlan
    world: JobWorld
    cancel: threading.Event
    abandoned: threading.Event  # another node took the job over: stop, touch nothing
    gate_poke: threading.Event  # a gate decision was written: look now
    output_budget: OutputBudget

    @property
    def events(self) -> EventLog:
        return self.world.events

    @property
    def settings(self) -> RunSettings:
        return self.world.settings

    @property
    def step_timeout(self) -> float:
        """A step's time limit when the step names none."""
        return self.plan.strategy.timeout or self.settings.step_timeout

    def append(self, type_: str, host: str | None, data: dict[str, Any]) -> int:
        """Write one event of this job (none once another node has taken it over)."""
        self.raise_if_fenced()
        return self.events.append(self.job_id, type_, host, data)

    def raise_if_fenced(self) -> None:
        if self.abandoned.is_set():
            raise JobFenced(self.job_id)

    def location(self, host: str, position: StepPosition) -> StepLocation:
        key = PHASE_KEYS[position.phase] + str(position.index)
        return StepLocation(self.settings.remote_run_dir, self.job_uid, host, key)

    def host_dir(self, host: str) -> str:
        return self.location(host, StepPosition(STEPS, 0)).host_dir

    def in_parallel(self, count: int, work: Callable[[], None]) -> None:
        """Run ``work`` in ``count`` tasks and wait for them all; once another node
        has taken the job over, they stop and this raises :class:`JobFenced`."""
        done = threading.Semaphore(0)

        def task() -> None:
            try:
                work()
            except JobFenced:
                self.abandoned.set()
            finally:
                done.release()

        for _ in range(count):
            self.world.start_task(task)
        for _ in range(count):
            done.acquire()
        self.raise_if_fenced()
