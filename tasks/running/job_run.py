"""Running: one :class:`JobRun` per running job, fresh or resumed.

A run walks the plan's batches; each batch is worked by up to ``parallel`` worker tasks,
each taking the next server and running its steps over one transport session. A step
runs detached on its server (see :mod:`tasks.transport.protocol`), so when the connection drops
mid-step the run reconnects with backoff and reads on from the stored byte offsets, and
a run resumed after a console restart picks every server up where its log ends:
re-attaching to a step still running, collecting one that ended meanwhile, or going on
with the next step, the next server and the next batch.

What a run writes to the log is what may be shown: the job's parameters and each step's
command with secrets masked, and every output line with the server's secret values
replaced by ``••••`` (see :mod:`tasks.planning.secrets`); only the transport gets the real
command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from secrets import token_hex
from typing import Any

from tasks.events.resume import (
    HEALTH,
    ON_FAILURE,
    PROBE,
    STEPS,
    VERSION_FACT,
    HostProgress,
    JobProgress,
    OpenStep,
    StepPosition,
)
from tasks.events.writer import EventLog, JobFenced
from tasks.planning import safe_regex
from tasks.planning.plan import HostPlan, JobPlan
from tasks.planning.runbooks import RenderedStep
from tasks.planning.secrets import Masker
from tasks.rollout.strategy import (
    canary_stop,
    count_statuses,
    failure_stop,
    final_status,
    not_started_outcome,
    soak_stop,
)
from tasks.running.output import HostOutput, OutputBudget
from tasks.transport.protocol import (
    HostSession,
    StepLocation,
    StepResult,
    Transport,
    TransportError,
)

log = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 1.0  # how soon a cancel requested by another process is seen
# A step's run directory is named after its phase and index: "3", "f0" (on_failure),
# "h4" (a health step run again by a soak gate); a wait step's probes add "w<n>-<id>".
PHASE_KEYS = {STEPS: "", ON_FAILURE: "f", HEALTH: "h", PROBE: "v"}
PROBE_TIMEOUT = 30.0  # a probe's time limit when its step names none
PROBE_LINES_SHOWN = 20  # of a probe's output, the last lines its wait_probe event carries
PROBE_LINE_CHARS = 500
PROBE_OUTPUT_KEPT = 64 * 1024  # bytes of a probe's stdout kept to match `until` against
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0


@dataclass
class RunSettings:
    """What every run of this process shares (from ``config.DEFAULTS``)."""

    step_timeout: float = 3600
    flush_interval: float = 0.05
    flush_lines: int = 500
    remote_run_dir: str = "~/.patchbay/runs"
    reattach_timeout: float = 120
    remote_run_retention: float = 7 * 86_400
    max_step_output: int = 1 << 30
    max_job_output: int = 2 << 30


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
class _StepOutcome:
    status: str  # "ok", "failed" or "cancelled"
    exit_code: int | None = None
    reason: str | None = None
    lost: bool = False
    last_line: str | None = None
    signal: str | None = None  # the signal that stopped it ("TERM", "KILL")


def version_state(host: HostPlan, status: str, facts: dict[str, str],
                  unreported: bool) -> str | None:
    """Whether the version a server last reported still stands after this job.

    Only runbooks that report a version (a step, or an on_failure step, with
    ``capture: version``) can change it, as far as the console knows. ``verified``: the
    server reported its version after the last step that ran (or every step
    succeeded and it reported one); ``unverified``: a step ran after the last report
    (or before any) and the server ended without reporting again, so the build may
    have changed: the last reported version is no longer a fact. None: nothing
    learnt (no such runbook, or no step ran)."""
    if host.version_probe is None and not any(
            step.capture == VERSION_FACT for step in (*host.steps, *host.on_failure)):
        return None
    if not unreported:
        return "verified" if VERSION_FACT in facts else None
    if status == "succeeded" and VERSION_FACT in facts:
        return "verified"
    return "unverified"


class _ProbeControl:
    """A wait probe's control: stopped by a cancel or its own time limit."""

    def __init__(self, cancel: threading.Event | None, deadline: float,
                 abandoned: threading.Event) -> None:
        self.cancel = cancel
        self.deadline = deadline
        self.abandoned = abandoned

    def stop_reason(self) -> str | None:
        if self.abandoned.is_set():
            raise JobFenced
        if self.cancel is not None and self.cancel.is_set():
            return "cancel"
        if time.time() >= self.deadline:
            return "timeout"
        return None

    def tick(self) -> float | None:
        return None


class _StepControl:
    """Answers a transport's questions while one step runs: stop it? flush output?"""

    def __init__(self, cancel: threading.Event | None, deadline: float | None,
                 output: HostOutput, max_output: int,
                 abandoned: threading.Event | None = None) -> None:
        self.cancel = cancel
        self.abandoned = abandoned
        self.deadline = deadline
        self.output = output
        self.max_output = max_output

    def stop_reason(self) -> str | None:
        if self.abandoned is not None and self.abandoned.is_set():
            raise JobFenced  # leave the step running: its new owner reads it now
        if self.cancel is not None and self.cancel.is_set():
            return "cancel"
        if self.deadline is not None and time.time() >= self.deadline:
            return "timeout"
        if self.output.total_bytes > self.max_output:
            return "output_limit"
        return None

    def tick(self) -> float | None:
        return self.output.tick()


@dataclass
class JobRun:
    """One running job: its plan, its cancel flag and what its servers have done."""

    job_id: int
    job_uid: str
    plan: JobPlan
    world: JobWorld
    cancel: threading.Event = field(default_factory=threading.Event)
    # Set when another node took the job over: stop at once, touching no server.
    abandoned: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    results: dict[str, str] = field(default_factory=dict)
    failures: int = 0
    stop_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    output_budget: OutputBudget | None = None  # set when the run starts
    # Set when a gate decision for this job was written, so a paused run need not wait
    # for its next poll; and whether an operator aborted the rollout at a gate.
    gate_poke: threading.Event = field(default_factory=threading.Event)
    aborted: bool = False

    @property
    def events(self) -> EventLog:
        return self.world.events

    # -- the rollout --------------------------------------------------------------------

    def run(self, progress: JobProgress | None = None) -> None:
        """Run the job to its end; ``progress`` resumes it where its log stops."""
        try:
            self._run(progress)
        except JobFenced:
            self.abandoned.set()
            log.warning("job %s was taken over by another node; stopped running it here",
                        self.job_id)
        finally:
            self.finished.set()

    def abandon(self) -> None:
        """Another node owns the job now: stop without touching its servers."""
        self.abandoned.set()

    def _run(self, progress: JobProgress | None) -> None:
        self.world.start_task(self._watch_cancel_requests)
        self.output_budget = OutputBudget(  # a resumed job counts on from its log
            self.world.settings.max_job_output, progress.output_bytes if progress else 0,
            frozenset(progress.output_cut) if progress else frozenset())
        started = time.monotonic()
        batches = self.plan.batches()
        hosts_progress = progress.hosts if progress else {}
        started_batches = progress.started_batches if progress else set()
        if progress is None or not progress.job_started:
            self._append("job_started", None, {
                "runbook": self.plan.runbook_name, "kind": self.plan.kind,
                "params": self.plan.shown_params,
                "strategy": self.plan.strategy.model_dump(),
                "servers": [h.name for h in self.plan.hosts],
                "batches": [[h.name for h in batch] for batch in batches],
                "steps": self.plan.step_names,
            })
        limit = self.plan.strategy.failure_limit(len(self.plan.hosts))
        self._take_finished(hosts_progress, batches, limit)
        gates = progress.gates if progress else {}
        try:
            for index, batch in enumerate(batches):
                todo = [h for h in batch if h.name not in self.results]
                if self.cancel.is_set() or self.stop_reason:
                    # Servers already under way go on to a known state; no new ones start.
                    todo = [h for h in todo if h.name in hosts_progress
                            and hosts_progress[h.name].state != "pending"]
                if todo:
                    if index not in started_batches:
                        self._append("batch_started", None,
                                     {"batch": index, "servers": [h.name for h in batch]})
                    self._run_batch(todo, hosts_progress, limit)
                    with self.lock:
                        failed = sum(1 for h in batch
                                     if self.results.get(h.name) == "failed")
                        self.stop_reason = self.stop_reason or canary_stop(
                            index, len(batches), failed)
                if index + 1 < len(batches):
                    self._pass_gate(index, batches, gates.get(index))
            for host in self.plan.hosts:
                if host.name not in self.results:
                    status, reason = not_started_outcome(self.cancel.is_set(),
                                                         self.stop_reason)
                    self._append("host_finished", host.name,
                                 {"status": status, "reason": reason})
                    self.results[host.name] = status
        except Exception as exc:  # noqa: BLE001 - a bug must still end the job visibly
            log.exception("job %s crashed", self.job_id)
            for host in self.plan.hosts:
                if host.name not in self.results:
                    self._append("host_finished", host.name,
                                 {"status": "failed", "reason": f"internal error: {exc}"})
                    self.results[host.name] = "failed"
        counts = count_statuses(list(self.results.values()))
        finished: dict[str, Any] = {
            "status": final_status(counts, len(self.plan.hosts),
                                   self.cancel.is_set() or self.aborted),
            "counts": counts, "duration": round(time.monotonic() - started, 3)}
        if self.stop_reason:
            finished["reason"] = self.stop_reason
        self._append("job_finished", None, finished)
        self.events.wait_written()

    # -- gates between batches ------------------------------------------------------

    def _pass_gate(self, index: int, batches: list[list[HostPlan]],
                   known: dict[str, Any] | None) -> None:
        """The strategy's gate after batch ``index``: go on (auto), pause until an
        operator promotes or aborts (manual), or soak and re-check health (soak).
        ``known`` is what the log says of this gate already (a resumed job)."""
        gate = self.plan.strategy.gate
        if gate == "auto" or self.cancel.is_set() or self.stop_reason:
            return
        if all(h.name in self.results for batch in batches[index + 1:] for h in batch):
            return  # nothing left to start
        state = known["state"] if known else None
        if gate == "manual":
            self._manual_gate(index, batches, state, known or {})
        else:
            self._soak_gate(index, batches[index], state, known or {})

    def _manual_gate(self, index: int, batches: list[list[HostPlan]], state: str | None,
                     known: dict[str, Any]) -> None:
        if state == "promoted":
            return
        if state == "aborted":
            self._abort_at_gate(known.get("by"))
            return
        if state != "paused":
            self._append("job_paused", None, {"batch": index, "reason": "gate",
                                              "next_batch": index + 1})
            # Written before waiting: a promote is accepted only once the job reads paused.
            self.events.wait_written()
        action, by = self._await_gate_decision()
        if action == "promote":
            self._append("job_resumed", None, {"by": by, "batch": index + 1})
            self.events.wait_written()  # the request is cleared before the next gate
        elif action == "abort":
            self._append("job_aborted", None, {"by": by, "batch": index})
            self.events.wait_written()
            self._abort_at_gate(by)

    def _abort_at_gate(self, by: str | None) -> None:
        self.aborted = True
        self.stop_reason = f"aborted at the gate by {by or 'an operator'}"

    def _await_gate_decision(self) -> tuple[str, str | None]:
        """Wait for promote or abort (written by any console process), or a cancel."""
        while True:
            if self.abandoned.is_set():
                raise JobFenced(self.job_id)
            if self.cancel.is_set():
                return "cancel", None
            request = self.world.gate_request(self.job_id)
            if request is not None:
                return request
            self.gate_poke.wait(CANCEL_POLL_SECONDS)
            self.gate_poke.clear()

    def _soak_gate(self, index: int, batch: list[HostPlan], state: str | None,
                   known: dict[str, Any]) -> None:
        seconds = self.plan.strategy.soak_seconds or 0.0
        if state == "soak_passed":
            return
        if state == "soak_failed":
            self.stop_reason = known.get("reason") or soak_stop(index, seconds, [])
            return
        if state == "soak_started":
            until = float(known.get("until") or time.time())
        else:
            until = time.time() + seconds
            self._append("soak_started", None, {"batch": index, "seconds": seconds,
                                                "until": round(until, 3)})
        while not self.cancel.is_set():
            if self.abandoned.is_set():
                raise JobFenced(self.job_id)
            remaining = until - time.time()
            if remaining <= 0:
                break
            self.cancel.wait(min(remaining, CANCEL_POLL_SECONDS))
        if self.cancel.is_set():
            return
        checked = [h for h in batch if self.results.get(h.name) == "succeeded"]
        failed = self._recheck_health(checked)
        passed = not failed
        data: dict[str, Any] = {"batch": index, "passed": passed, "failed": failed}
        if not passed:
            self.stop_reason = soak_stop(index, seconds, failed)
            data["reason"] = self.stop_reason
        self._append("soak_finished", None, data)

    def _recheck_health(self, hosts: list[HostPlan]) -> list[str]:
        """Run the health steps again on ``hosts`` (up to ``parallel`` at once); the
        names of those where one failed."""
        queue = deque(hosts)
        failed: list[str] = []

        def worker() -> None:
            while not self.abandoned.is_set():
                with self.lock:
                    if not queue:
                        return
                    host = queue.popleft()
                with self.world.host_slots:
                    healthy = self._health_of(host)
                if not healthy:
                    with self.lock:
                        failed.append(host.name)

        self._in_parallel(min(self.plan.strategy.parallel, len(hosts)), worker)
        return sorted(failed)

    def _health_of(self, host: HostPlan) -> bool:
        session = self.world.transport(host.target)
        try:
            session.connect()
        except TransportError as exc:
            session.close()
            self._append("step_finished", host.name, {
                "step": "connect", "index": 0, "phase": HEALTH, "status": "failed",
                "exit_code": None, "duration": 0, "reason": str(exc)})
            return False
        holder = [session]
        try:
            for index, step in enumerate(host.steps):
                if not step.health:
                    continue
                result = self._run_step(host, holder, step, StepPosition(HEALTH, index), None)
                if result.status != "ok":
                    return False
            return True
        except Exception as exc:  # noqa: BLE001 - a bug fails the check visibly
            log.exception("job %s: health check of %s crashed", self.job_id, host.name)
            self._append("step_finished", host.name, {
                "step": "health", "index": 0, "phase": HEALTH, "status": "failed",
                "exit_code": None, "duration": 0, "reason": f"internal error: {exc}"})
            return False
        finally:
            if self.events.wait_written():
                holder[0].clean(self._host_dir(host), self.world.settings.remote_run_dir,
                                self.world.settings.remote_run_retention)
            holder[0].close()

    def _take_finished(self, progress: dict[str, HostProgress],
                       batches: list[list[HostPlan]], limit: int | None) -> None:
        """Servers a resumed job had already finished count as before the restart."""
        for host in self.plan.hosts:
            known = progress.get(host.name)
            if known is not None and known.state == "finished":
                self.results[host.name] = known.status or "failed"
        self.failures = sum(1 for status in self.results.values() if status == "failed")
        self.stop_reason = failure_stop(self.failures, limit, self.plan.strategy.max_failures)
        if batches and all(h.name in self.results for h in batches[0]):
            failed = sum(1 for h in batches[0] if self.results[h.name] == "failed")
            self.stop_reason = self.stop_reason or canary_stop(0, len(batches), failed)

    def _watch_cancel_requests(self) -> None:
        """Let a cancel requested through the database (by any console process that
        shares it) reach this run."""
        while not self.finished.wait(CANCEL_POLL_SECONDS):
            if self.cancel.is_set():
                return
            if self.world.is_cancel_requested(self.job_id):
                self.cancel.set()
                return

    def _run_batch(self, batch: list[HostPlan], progress: dict[str, HostProgress],
                   limit: int | None) -> None:
        # Servers under way come first, so a stop lets them finish and skips the rest.
        batch = sorted(batch, key=lambda h: 0 if h.name in progress
                       and progress[h.name].state != "pending" else 1)
        queue = deque(batch)

        def worker() -> None:
            while not self.abandoned.is_set():
                with self.lock:
                    if not queue:
                        return
                    resuming = queue[0].name in progress and \
                        progress[queue[0].name].state != "pending"
                    # A server already under way goes on even after a stop: its
                    # step is running, and it must reach a known state.
                    if not resuming and (self.cancel.is_set() or self.stop_reason):
                        return
                    host = queue.popleft()
                with self.world.host_slots:
                    status = self._run_host_safely(host, progress.get(host.name))
                with self.lock:
                    self.results[host.name] = status
                    if status == "failed":
                        self.failures += 1
                        self.stop_reason = self.stop_reason or failure_stop(
                            self.failures, limit, self.plan.strategy.max_failures)

        self._in_parallel(min(self.plan.strategy.parallel, len(batch)), worker)

    def _in_parallel(self, count: int, work: Callable[[], None]) -> None:
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
        if self.abandoned.is_set():
            raise JobFenced(self.job_id)

    # -- one server -------------------------------------------------------------------

    def _run_host_safely(self, host: HostPlan, progress: HostProgress | None) -> str:
        """A bug in running one server fails that server visibly, never the job."""
        try:
            return self._run_host(host, progress)
        except Exception as exc:  # noqa: BLE001
            log.exception("job %s: server %s crashed", self.job_id, host.name)
            outcome = {"status": "failed",
                       "reason": f"internal error: {type(exc).__name__}: {exc}"}
            state = version_state(host, "failed", {}, unreported=True)  # steps may have run
            if state:
                outcome["version_state"] = state
            self._append("host_finished", host.name, outcome)
            return "failed"

    def _run_host(self, host: HostPlan, progress: HostProgress | None) -> str:
        """Run (or go on with) one server's steps over one session; its final status."""
        resuming = progress is not None and progress.state != "pending"
        started = time.monotonic()
        if not resuming:
            self._append("host_started", host.name, {"address": host.target.address})
        session = self.world.transport(host.target)
        try:
            session.connect()
        except TransportError as exc:
            session.close()
            if not resuming:
                return self._finish_host(host, {"status": "failed", "failed_step": "connect",
                                                "reason": str(exc)}, started)
            reconnected = self._reconnect(host, str(exc))
            if reconnected is None:
                open_step = progress.open_step if progress else None
                return self._finish_host(host, self._host_outcome(
                    host, self._lost_outcome(host, open_step),
                    dict(progress.facts) if progress else {},
                    progress.version_unreported if progress else True), started)
            session = reconnected
        holder = [session]
        try:
            outcome = self._run_steps(host, holder, progress if resuming else None)
            # Only once the output is stored may its files go.
            if not outcome.get("lost") and self.events.wait_written():
                holder[0].clean(self._host_dir(host), self.world.settings.remote_run_dir,
                                self.world.settings.remote_run_retention)
        finally:
            holder[0].close()
        return self._finish_host(host, outcome, started)

    def _finish_host(self, host: HostPlan, outcome: dict[str, Any], started: float) -> str:
        outcome["duration"] = round(time.monotonic() - started, 3)
        self._append("host_finished", host.name, outcome)
        return outcome["status"]

    def _run_steps(self, host: HostPlan, holder: list[HostSession],
                   progress: HostProgress | None) -> dict[str, Any]:
        facts: dict[str, str] = dict(progress.facts) if progress else {}
        failure = progress.failure if progress else None
        # A step ran since the server last reported its version: see version_state.
        unreported = progress.version_unreported if progress else False
        position: StepPosition | None = StepPosition(STEPS, 0)
        open_step: OpenStep | None = None
        probe_open: OpenStep | None = None  # a version probe the log shows under way
        if progress is not None:
            open_step = progress.open_step
            position = open_step.position if open_step else progress.next_step
            if open_step is not None and open_step.position.phase == PROBE:
                probe_open, open_step, position = open_step, None, None
        while position is not None:
            steps = host.steps if position.phase == STEPS else host.on_failure
            if position.index >= len(steps):
                if position.phase == ON_FAILURE and failure is not None:
                    failure["on_failure"] = "succeeded"
                break
            step = steps[position.index]
            if position.phase == STEPS and open_step is None and self.cancel.is_set():
                failure = {"status": "cancelled", "reason": "job cancelled"}
                break
            unreported = True
            result = self._run_step(host, holder, step, position, open_step)
            open_step = None
            if result.status == "ok":
                # An on_failure step may report a fact too (the version it rolled back to).
                if step.capture and result.last_line is not None:
                    facts[step.capture] = result.last_line
                    unreported = unreported and step.capture != VERSION_FACT
                position = StepPosition(position.phase, position.index + 1)
                continue
            if position.phase == ON_FAILURE:
                if failure is not None:
                    failure["reason"] = (f"{failure['reason']}; on_failure step "
                                         f"{step.name!r} also failed")
                    failure["on_failure"] = "failed"
                break
            failure = {"status": "cancelled" if result.status == "cancelled" else "failed",
                       "failed_step": step.name, "exit_code": result.exit_code,
                       "reason": result.reason, "lost": result.lost}
            if result.signal:
                failure["signal"] = result.signal
            if failure["status"] == "failed" and host.on_failure and not result.lost:
                position = StepPosition(ON_FAILURE, 0)
                continue
            break
        probed = progress.probed if progress is not None else False
        if host.version_probe is not None and (unreported or probe_open) and not probed \
                and not (failure or {}).get("lost"):
            # No step reported the build: ask the server (a cancel does not stop this).
            result = self._run_step(host, holder, host.version_probe, StepPosition(PROBE, 0),
                                    probe_open)
            if result.status == "ok" and result.last_line is not None:
                facts[VERSION_FACT] = result.last_line
                unreported = False
        if failure is None:
            return self._host_outcome(host, {"status": "succeeded"}, facts, unreported)
        outcome = {key: value for key, value in failure.items() if key != "lost" or value}
        return self._host_outcome(host, outcome, facts, unreported)

    @staticmethod
    def _host_outcome(host: HostPlan, outcome: dict[str, Any], facts: dict[str, str],
                      unreported: bool) -> dict[str, Any]:
        """A server's ``host_finished`` data: ``outcome`` with the facts it reported,
        what became of its version, and the version its on_failure steps rolled it
        back to, when they reported one."""
        outcome["facts"] = facts
        version = facts.get(VERSION_FACT)
        if outcome.get("on_failure") == "succeeded" and version is not None \
                and not unreported:
            outcome["reason"] = f"{outcome.get('reason')}; rolled back to {version}"
        state = version_state(host, outcome["status"], facts, unreported)
        if state:
            outcome["version_state"] = state
        return outcome

    def _run_step(self, host: HostPlan, holder: list[HostSession], step: RenderedStep,
                  position: StepPosition, resumed: OpenStep | None) -> _StepOutcome:
        if step.wait is not None:
            return self._run_wait_step(host, holder, step, position, resumed)
        settings = self.world.settings
        timeout = step.timeout or self.plan.strategy.timeout or settings.step_timeout
        where = self._location(host, position)
        if resumed is None:
            started_wall = time.time()
            self._append("step_started", host.name, {
                "step": step.name, "index": position.index, "phase": position.phase,
                "command": step.shown, "timeout": timeout, "run_dir": where.host_dir})
            # Stored before the server starts it: a console that died in between would
            # leave a log saying the step never started, and whoever resumes the job
            # would start it a second time, alongside the first (``make chaos`` saw a
            # step run twice on four servers after a kill -9).
            self.events.wait_written()
        else:
            started_wall = resumed.started_ts or time.time()
        output = HostOutput(self.events, self.job_id, host.name, step.name,
                            settings.flush_interval, settings.flush_lines,
                            offsets=resumed.offsets if resumed else None,
                            mask=Masker(host.secrets))
        if resumed is not None:
            output.last_stdout_line = resumed.last_stdout_line
        output.budget = self.output_budget
        control = _StepControl(None if position.phase in (ON_FAILURE, PROBE) else self.cancel,
                               started_wall + timeout, output, settings.max_step_output,
                               self.abandoned)
        started = time.monotonic()
        attach = resumed is not None
        result = self._drive_step(host, holder, step, where, output, control, attach)
        output.flush()
        outcome = self._judge(step, timeout, result)
        outcome.last_line = output.last_stdout_line
        return self._step_finished(host, step, position, outcome, started)

    def _step_finished(self, host: HostPlan, step: RenderedStep, position: StepPosition,
                       outcome: _StepOutcome, started: float) -> _StepOutcome:
        """Log how a step ended (``started``: its monotonic start); returns ``outcome``."""
        finished: dict[str, Any] = {
            "step": step.name, "index": position.index, "phase": position.phase,
            "status": outcome.status, "exit_code": outcome.exit_code,
            "duration": round(time.monotonic() - started, 3), "reason": outcome.reason}
        if outcome.lost:
            finished["lost"] = True
        if outcome.signal:
            finished["signal"] = outcome.signal
        self._append("step_finished", host.name, finished)
        return outcome

    # -- wait steps -------------------------------------------------------------------

    def _run_wait_step(self, host: HostPlan, holder: list[HostSession], step: RenderedStep,
                       position: StepPosition, resumed: OpenStep | None) -> _StepOutcome:
        """Probe every ``every`` seconds until the probe's output matches, or the wait
        times out. Each probe is a short detached step of its own (a run directory
        per probe), reported as one ``wait_probe`` event; a resumed job goes on probing
        until the deadline set when the wait started."""
        wait = step.wait
        assert wait is not None
        base = self._location(host, position)
        if resumed is None:
            started_wall = time.time()
            self._append("step_started", host.name, {
                "step": step.name, "index": position.index, "phase": position.phase,
                "command": step.shown, "timeout": wait.timeout, "run_dir": base.host_dir,
                "wait": {**wait.to_json(), "deadline": round(started_wall + wait.timeout, 3)}})
        else:
            started_wall = resumed.started_ts or time.time()
        deadline = started_wall + wait.timeout
        cancel = self.cancel if position.phase != ON_FAILURE else None
        attempt = resumed.probes if resumed is not None else 0
        started = time.monotonic()
        outcome: _StepOutcome | None = None
        while outcome is None:
            if cancel is not None and cancel.is_set():
                outcome = _StepOutcome("cancelled", None, "job cancelled while waiting")
                break
            attempt += 1
            probe = self._probe(host, holder, step, base, attempt, cancel)
            if probe is None:  # the connection is gone for good
                outcome = _StepOutcome("cancelled" if self.cancel.is_set() else "failed",
                                       None, self._lost_reason(host, None, None), lost=True)
                break
            matched, exit_code, shown = probe
            remaining = deadline - time.time()
            self._append("wait_probe", host.name, {
                "step": step.name, "index": position.index, "phase": position.phase,
                "attempt": attempt, "exit_code": exit_code, "output": shown,
                "matched": matched, "remaining": round(max(remaining, 0.0), 1)})
            if matched:
                plural = "" if attempt == 1 else "s"
                outcome = _StepOutcome("ok", 0, f"matched {wait.until} after {attempt} "
                                       f"probe{plural}")
            elif remaining <= 0:
                outcome = self._wait_timed_out(wait.timeout, wait.until, wait.on_timeout)
            elif cancel is not None:
                cancel.wait(min(wait.every, remaining))
            else:
                time.sleep(min(wait.every, remaining))
            if self.abandoned.is_set():
                raise JobFenced(self.job_id)
        return self._step_finished(host, step, position, outcome, started)

    @staticmethod
    def _wait_timed_out(timeout: float, until: str, on_timeout: str) -> _StepOutcome:
        text = f"no probe matched {until} within {timeout:g} s"
        if on_timeout == "proceed":
            return _StepOutcome("ok", None, f"{text}; going on (on_timeout: proceed)")
        return _StepOutcome("failed", None, f"timed out: {text}")

    def _probe(self, host: HostPlan, holder: list[HostSession], step: RenderedStep,
               base: StepLocation, attempt: int, cancel: threading.Event | None
               ) -> tuple[bool, int | None, list[str]] | None:
        """Run the wait's probe once: (matched, exit code, the output lines to show);
        None when the connection is lost and cannot be had back."""
        wait = step.wait
        assert wait is not None
        mask = Masker(host.secrets)
        kept: list[str] = []
        kept_bytes = 0
        shown: deque[str] = deque(maxlen=PROBE_LINES_SHOWN)

        def sink(stream: str, line: str, _offset: int) -> None:
            nonlocal kept_bytes
            if stream == "stdout" and kept_bytes < PROBE_OUTPUT_KEPT:
                kept.append(line)
                kept_bytes += len(line) + 1
            text = mask(line)[:PROBE_LINE_CHARS]
            shown.append(text if stream == "stdout" else f"! {text}")

        timeout = step.timeout or PROBE_TIMEOUT
        control = _ProbeControl(cancel, time.time() + timeout, self.abandoned)
        where = StepLocation(base.root, base.job_uid, base.host,
                             f"{base.key}w{attempt}-{token_hex(3)}")
        while True:
            try:
                result = holder[0].start_step(where, step.command, sink, control,
                                              host.secrets)
            except TransportError as exc:
                result = StepResult(None, lost=True, reason=str(exc))
            if not result.lost:
                break
            holder[0].close()
            session = self._reconnect(host, result.reason or "SSH connection dropped")
            if session is None:
                return None
            holder[0] = session
            kept.clear()
            shown.clear()
            where = StepLocation(base.root, base.job_uid, base.host,
                                 f"{base.key}w{attempt}-{token_hex(3)}")
        if result.stopped == "timeout":
            shown.append(f"! probe timed out after {timeout:g} s")
        matched = result.exit_code == 0 and safe_regex.search_lines(wait.until,
                                                                     "\n".join(kept))
        return matched, result.exit_code, list(shown)

    def _drive_step(self, host: HostPlan, holder: list[HostSession], step: RenderedStep,
                    where: StepLocation, output: HostOutput, control: _StepControl,
                    attach: bool) -> StepResult:
        """Start (or re-attach to) a step and read it to its end, reconnecting while
        the connection drops, for up to ``reattach_timeout`` each time."""
        while True:
            try:
                if attach:
                    status = holder[0].step_status(where)
                    if status.state == "missing":  # the step never got to start
                        attach = False
                        continue
                    result = holder[0].attach_step(where, dict(output.offsets), output.line,
                                                   control, host.secrets)
                else:
                    result = holder[0].start_step(where, step.command, output.line, control,
                                                  host.secrets)
            except TransportError as exc:
                result = StepResult(None, lost=True, reason=str(exc))
            if not result.lost:
                return result
            output.flush()
            holder[0].close()
            session = self._reconnect(host, result.reason or "SSH connection dropped")
            if session is None:
                return StepResult(None, control.stop_reason(), lost=True,
                                  reason=self._lost_reason(host, step, where))
            holder[0] = session
            attach = True

    def _reconnect(self, host: HostPlan, reason: str) -> HostSession | None:
        """Reconnect with backoff for up to ``reattach_timeout``; None when that runs
        out (or the job is cancelled meanwhile)."""
        timeout = self.world.settings.reattach_timeout
        self._append("host_reconnecting", host.name, {"reason": reason, "timeout": timeout})
        deadline = time.monotonic() + timeout
        delay = RECONNECT_FIRST_DELAY
        attempts = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.cancel.wait(min(delay, remaining)):
                return None
            if self.abandoned.is_set():
                raise JobFenced(self.job_id)
            attempts += 1
            session = self.world.transport(host.target)
            try:
                session.connect()
            except TransportError as exc:
                session.close()
                log.info("job %s: %s still unreachable (%s)", self.job_id, host.name, exc)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            self._append("host_reconnected", host.name, {"attempts": attempts})
            return session

    def _lost_reason(self, host: HostPlan, step: RenderedStep | None,
                     where: StepLocation | None) -> str:
        timeout = self.world.settings.reattach_timeout
        if self.cancel.is_set():
            lead = f"lost: job cancelled while {host.name} was unreachable"
        else:
            lead = f"lost: no SSH connection to {host.name} for {timeout:g} s"
        if step is None or where is None:
            return lead
        return (f"{lead}; step {step.name!r} was left running on the server "
                f"(not killed), its output so far is kept there in {where.host_dir}")

    def _lost_outcome(self, host: HostPlan, open_step: OpenStep | None) -> dict[str, Any]:
        step, where = None, None
        if open_step is not None:
            steps = host.steps if open_step.position.phase == STEPS else host.on_failure
            step = steps[open_step.position.index]
            where = self._location(host, open_step.position)
        outcome: dict[str, Any] = {"status": "cancelled" if self.cancel.is_set() else "failed",
                                   "reason": self._lost_reason(host, step, where),
                                   "lost": True}
        if step is not None:
            outcome["failed_step"] = step.name
        return outcome

    @staticmethod
    def _judge(step: RenderedStep, timeout: float, result: StepResult) -> _StepOutcome:
        code = result.exit_code
        if result.lost:
            status = "cancelled" if result.stopped == "cancel" else "failed"
            return _StepOutcome(status, None, result.reason or "SSH connection dropped",
                                lost=True)
        if result.stopped:
            # Stopped by a signal we sent: its exit status (paramiko's -1, the shell's
            # 128 + N) says only that, and the signal is named instead.
            stopped = f"stopped ({result.signal})" if result.signal else "stopped"
            if result.signal and (code is None or code < 0 or code > 128):
                code = None
            if result.stopped == "timeout":
                text = f"timed out after {timeout:g} s"
                return _StepOutcome("failed", code,
                                    f"{text}, {stopped}" if result.signal else text,
                                    signal=result.signal)
            if result.stopped == "cancel":
                return _StepOutcome("cancelled", code, f"{stopped}: job cancelled",
                                    signal=result.signal)
            if result.stopped == "output_limit":
                return _StepOutcome("failed", code, f"{stopped}: its output passed the "
                                    "limit (PATCHBAY_MAX_STEP_OUTPUT)", signal=result.signal)
        if result.reason and code is None:
            return _StepOutcome("failed", None, result.reason)
        if code == 0:
            return _StepOutcome("ok", 0)
        if result.reason:
            return _StepOutcome("failed", code, result.reason)
        if code is None or code == -1:
            return _StepOutcome("failed", code, f"step {step.name!r} was killed by a signal")
        return _StepOutcome("failed", code, f"step {step.name!r} exited with code {code}")

    # -- names ------------------------------------------------------------------------

    def _host_dir(self, host: HostPlan) -> str:
        return self._location(host, StepPosition(STEPS, 0)).host_dir

    def _location(self, host: HostPlan, position: StepPosition) -> StepLocation:
        key = PHASE_KEYS[position.phase] + str(position.index)
        return StepLocation(self.world.settings.remote_run_dir, self.job_uid, host.name, key)

    def _append(self, type_: str, host: str | None, data: dict[str, Any]) -> int:
        if self.abandoned.is_set():
            raise JobFenced(self.job_id)
        return self.events.append(self.job_id, type_, host, data)
