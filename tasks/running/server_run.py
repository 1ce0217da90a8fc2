"""One server's run: its steps, its on_failure steps when one fails, and its version
probe, over one transport session the run owns (and replaces when it reconnects).

A resumed server goes on where its log ends: inside the step still open, with the next
step, or in the middle of its on_failure steps. A soak gate uses a run of its own to
check a server's health again (:meth:`ServerRun.check_health`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from tasks.events.resume import (
    HEALTH,
    ON_FAILURE,
    PROBE,
    STEPS,
    VERSION_FACT,
    HostProgress,
    OpenStep,
    StepPosition,
)
from tasks.planning.job_plan import HostPlan
from tasks.planning.rendered_steps import RenderedStep
from tasks.running.context import RunContext
from tasks.running.outcomes import (
    Ending,
    HostEnding,
    HostOutcome,
    ServerLost,
    StepFailed,
    StepOutcome,
    host_outcome,
    lost_reason,
    version_state,
)
from tasks.running.step_driver import StepDriver
from tasks.transport.protocol import HostSession, StepLocation, TransportError

log = logging.getLogger(__name__)

RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0


class ServerRun:
    """One server of a running job, with the session its steps run over."""

    session: HostSession  # opened by run_safely or check_health, replaced on reconnect

    def __init__(self, context: RunContext, host: HostPlan,
                 progress: HostProgress | None = None) -> None:
        self.context = context
        self.host = host
        # What the log says of a server under way (a resumed job); None: not started.
        self.progress = progress if progress is not None and progress.state != "pending" \
            else None
        self.steps = StepDriver(self)
        self.facts: dict[str, str] = dict(self.progress.facts) if self.progress else {}
        # A step ran since the server last reported its version: see version_state.
        self.unreported = self.progress.version_unreported if self.progress else False

    # -- the whole server ----------------------------------------------------------

    def run_safely(self) -> str:
        """Run the server to its end; its final status. A bug in running one server
        fails that server visibly, never the job."""
        try:
            return self._run()
        except Exception as exc:  # noqa: BLE001
            log.exception("job %s: server %s crashed", self.context.job_id, self.host.name)
            ending = HostEnding("failed", f"internal error: {type(exc).__name__}: {exc}")
            state = version_state(self.host, "failed", {}, unreported=True)  # steps may have run
            self.context.append("host_finished", self.host.name,
                                HostOutcome(ending, version_state=state).to_data())
            return "failed"

    def _run(self) -> str:
        """Run (or go on with) the server's steps over one session; its final status."""
        started = time.monotonic()
        if self.progress is None:
            self.context.append("host_started", self.host.name,
                                {"address": self.host.target.address})
        self.session = self.context.world.transport(self.host.target)
        unreachable = self._connect()
        if unreachable is not None:
            return self._finish(unreachable, started)
        try:
            outcome = self._run_steps()
            # Only once the output is stored may its files go.
            if not outcome.lost and self.context.events.wait_written():
                self._clean()
        finally:
            self.session.close()
        return self._finish(outcome, started)

    def _connect(self) -> HostOutcome | None:
        """Open the session; how the server ended when that fails for good. A resumed
        server is reconnected to for up to ``reattach_timeout``: its step may be
        running there still."""
        try:
            self.session.connect()
        except TransportError as exc:
            if self.progress is None:
                self.session.close()
                return HostOutcome(HostEnding("failed", str(exc), failed_step="connect"))
            if not self.reconnect(str(exc)):
                return host_outcome(self.host, self._lost(self.progress.open_step),
                                    self.facts, self.unreported)
        return None

    def _finish(self, outcome: HostOutcome, started: float) -> str:
        outcome = replace(outcome, duration=round(time.monotonic() - started, 3))
        self.context.append("host_finished", self.host.name, outcome.to_data())
        return outcome.status

    def _clean(self) -> None:
        """Remove the server's run directories of this job (and old leftovers)."""
        settings = self.context.settings
        self.session.clean(self.context.host_dir(self.host.name), settings.remote_run_dir,
                           settings.remote_run_retention)

    # -- its steps -------------------------------------------------------------------

    def _run_steps(self) -> HostOutcome:
        progress = self.progress
        failure: Ending | None = None
        position: StepPosition | None = StepPosition(STEPS, 0)
        open_step: OpenStep | None = None
        probe_open: OpenStep | None = None  # a version probe the log shows under way
        if progress is not None:
            if progress.failure is not None:
                failure = StepFailed(**progress.failure)
            open_step = progress.open_step
            position = open_step.position if open_step else progress.next_step
            if open_step is not None and open_step.position.phase == PROBE:
                probe_open, open_step, position = open_step, None, None
        failure = self._walk_steps(position, open_step, failure)
        probed = progress.probed if progress is not None else False
        if self.host.version_probe is not None and (self.unreported or probe_open) \
                and not probed and not (failure is not None and failure.lost):
            self._probe_version(probe_open)
        return host_outcome(self.host, failure or HostEnding("succeeded"), self.facts,
                            self.unreported)

    def _walk_steps(self, position: StepPosition | None, open_step: OpenStep | None,
                    failure: Ending | None) -> Ending | None:
        """Run the steps from ``position`` on (``open_step``: the one the log shows
        under way), and the on_failure steps when one fails; how they failed, if so."""
        while position is not None:
            steps = self.host.steps if position.phase == STEPS else self.host.on_failure
            if position.index >= len(steps):
                if position.phase == ON_FAILURE and isinstance(failure, StepFailed):
                    failure = replace(failure, on_failure="succeeded")
                break
            step = steps[position.index]
            if position.phase == STEPS and open_step is None and self.context.cancel.is_set():
                return HostEnding("cancelled", "job cancelled")
            self.unreported = True
            result = self.steps.run(step, position, open_step)
            open_step = None
            if result.status == "ok":
                self._keep_fact(step, result)
                position = StepPosition(position.phase, position.index + 1)
                continue
            if position.phase == ON_FAILURE:
                if isinstance(failure, StepFailed):
                    failure = failure.rollback_failed(step.name)
                break
            failure = StepFailed("cancelled" if result.status == "cancelled" else "failed",
                                 step.name, result.exit_code, result.reason, result.lost,
                                 result.signal)
            if failure.status == "failed" and self.host.on_failure and not result.lost:
                position = StepPosition(ON_FAILURE, 0)
                continue
            break
        return failure

    def _keep_fact(self, step: RenderedStep, result: StepOutcome) -> None:
        """A step that captures a fact reported it (an on_failure step may report one
        too: the version it rolled back to)."""
        if step.capture and result.last_line is not None:
            self.facts[step.capture] = result.last_line
            self.unreported = self.unreported and step.capture != VERSION_FACT

    def _probe_version(self, probe_open: OpenStep | None) -> None:
        """No step reported the build: ask the server (a cancel does not stop this)."""
        assert self.host.version_probe is not None
        result = self.steps.run(self.host.version_probe, StepPosition(PROBE, 0), probe_open)
        if result.status == "ok" and result.last_line is not None:
            self.facts[VERSION_FACT] = result.last_line
            self.unreported = False

    # -- its health, for a soak gate ------------------------------------------------------

    def check_health(self) -> bool:
        """Run the server's health steps again; whether they all passed."""
        self.session = self.context.world.transport(self.host.target)
        try:
            self.session.connect()
        except TransportError as exc:
            self.session.close()
            self._health_failed("connect", str(exc))
            return False
        try:
            for index, step in enumerate(self.host.steps):
                if not step.health:
                    continue
                if self.steps.run(step, StepPosition(HEALTH, index), None).status != "ok":
                    return False
            return True
        except Exception as exc:  # noqa: BLE001 - a bug fails the check visibly
            log.exception("job %s: health check of %s crashed", self.context.job_id,
                          self.host.name)
            self._health_failed("health", f"internal error: {exc}")
            return False
        finally:
            if self.context.events.wait_written():
                self._clean()
            self.session.close()

    def _health_failed(self, step: str, reason: str) -> None:
        outcome = StepOutcome("failed", None, reason)
        self.context.append("step_finished", self.host.name,
                            outcome.finished_data(step, StepPosition(HEALTH, 0), 0))

    # -- its connection ---------------------------------------------------------------

    def reconnect(self, reason: str) -> bool:
        """The session dropped (``reason``): close it and open a new one, with backoff
        for up to ``reattach_timeout``; False when that runs out (or the job is
        cancelled meanwhile)."""
        self.session.close()
        timeout = self.context.settings.reattach_timeout
        self.context.append("host_reconnecting", self.host.name,
                            {"reason": reason, "timeout": timeout})
        deadline = time.monotonic() + timeout
        delay = RECONNECT_FIRST_DELAY
        attempts = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.context.cancel.wait(min(delay, remaining)):
                return False
            self.context.raise_if_fenced()
            attempts += 1
            session = self.context.world.transport(self.host.target)
            try:
                session.connect()
            except TransportError as exc:
                session.close()
                log.info("job %s: %s still unreachable (%s)", self.context.job_id,
                         self.host.name, exc)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            self.context.append("host_reconnected", self.host.name, {"attempts": attempts})
            self.session = session
            return True

    def lost_reason(self, step: str | None = None, where: StepLocation | None = None) -> str:
        """Why the server is lost, inside step ``step`` run in ``where`` (if any)."""
        return lost_reason(self.host.name, self.context.cancel.is_set(),
                           self.context.settings.reattach_timeout, step,
                           where.host_dir if where is not None else None)

    def _lost(self, open_step: OpenStep | None) -> ServerLost:
        """A resumed server that stayed unreachable (``open_step``: the step the log
        shows under way, left running there)."""
        status = "cancelled" if self.context.cancel.is_set() else "failed"
        if open_step is None:
            return ServerLost(status, self.lost_reason())
        steps = self.host.steps if open_step.position.phase == STEPS else self.host.on_failure
        step = steps[open_step.position.index]
        where = self.context.location(self.host.name, open_step.position)
        return ServerLost(status, self.lost_reason(step.name, where), step.name)
