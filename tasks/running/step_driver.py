"""The step driver: one step of one server, from its ``step_started`` to its
``step_finished``.

A command step is started (or, for a resumed job, re-attached to: it runs detached on
its server, see :mod:`tasks.transport.protocol`) and followed to its end; when the
connection drops the driver has the server's run reconnect and reads on from the stored
byte offsets. A wait step probes until its output matches (see :mod:`wait_probes
<tasks.running.wait_probes>`). Either way the result is judged
(:func:`~tasks.running.outcomes.judge`) and logged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from tasks.events.fencing import JobFenced
from tasks.events.resume import ON_FAILURE, PROBE, OpenStep, StepPosition
from tasks.planning.rendered_steps import RenderedStep
from tasks.planning.secrets import Masker
from tasks.running.outcomes import StepOutcome, judge
from tasks.running.output import HostOutput
from tasks.running.wait_probes import WaitProbes
from tasks.transport.protocol import StepLocation, StepResult, TransportError

if TYPE_CHECKING:
    from tasks.running.server_run import ServerRun


class StepControl:
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


class StepDriver:
    """Runs the steps of one server's run, over the session that run owns."""

    def __init__(self, server: ServerRun) -> None:
        self.server = server
        self.context = server.context
        self.host = server.host
        self.waits = WaitProbes(self)

    def run(self, step: RenderedStep, position: StepPosition,
            resumed: OpenStep | None) -> StepOutcome:
        """Run ``step`` at ``position`` (``resumed``: the log shows it under way)."""
        if step.wait is not None:
            return self.waits.run(step, position, resumed)
        return self._run_command(step, position, resumed)

    def finished(self, step: RenderedStep, position: StepPosition, outcome: StepOutcome,
                 started: float) -> StepOutcome:
        """Log how a step ended (``started``: its monotonic start); returns ``outcome``."""
        self.context.append("step_finished", self.host.name, outcome.finished_data(
            step.name, position, round(time.monotonic() - started, 3)))
        return outcome

    def _run_command(self, step: RenderedStep, position: StepPosition,
                     resumed: OpenStep | None) -> StepOutcome:
        context, settings = self.context, self.context.settings
        timeout = step.timeout or context.step_timeout
        where = context.location(self.host.name, position)
        if resumed is None:
            started_wall = time.time()
            context.append("step_started", self.host.name, {
                "step": step.name, "index": position.index, "phase": position.phase,
                "command": step.shown, "timeout": timeout, "run_dir": where.host_dir})
            # Stored before the server starts it: a console that died in between would
            # leave a log saying the step never started, and whoever resumes the job
            # would start it a second time, alongside the first (``make chaos`` saw a
            # step run twice on four servers after a kill -9).
            context.events.wait_written()
        else:
            started_wall = resumed.started_ts or time.time()
        output = self._output(step, resumed)
        control = StepControl(
            None if position.phase in (ON_FAILURE, PROBE) else context.cancel,
            started_wall + timeout, output, settings.max_step_output, context.abandoned)
        started = time.monotonic()
        result = self._follow(step, where, output, control, attach=resumed is not None)
        output.flush()
        outcome = replace(judge(step.name, timeout, result),
                          last_line=output.last_stdout_line)
        return self.finished(step, position, outcome, started)

    def _output(self, step: RenderedStep, resumed: OpenStep | None) -> HostOutput:
        """Where a step's output lines go: masked, batched, counted against the job's
        budget, and for a resumed step on from the offsets the log stored."""
        settings = self.context.settings
        output = HostOutput(self.context.events, self.context.job_id, self.host.name,
                            step.name, settings.flush_interval, settings.flush_lines,
                            offsets=resumed.offsets if resumed else None,
                            mask=Masker(self.host.secrets))
        if resumed is not None:
            output.last_stdout_line = resumed.last_stdout_line
        output.budget = self.context.output_budget
        return output

    def _follow(self, step: RenderedStep, where: StepLocation, output: HostOutput,
                control: StepControl, attach: bool) -> StepResult:
        """Start (or re-attach to) a step and read it to its end, reconnecting while
        the connection drops, for up to ``reattach_timeout`` each time."""
        while True:
            try:
                if attach:
                    status = self.server.session.step_status(where)
                    if status.state == "missing":  # the step never got to start
                        attach = False
                        continue
                    result = self.server.session.attach_step(
                        where, dict(output.offsets), output.line, control, self.host.secrets)
                else:
                    result = self.server.session.start_step(
                        where, step.command, output.line, control, self.host.secrets)
            except TransportError as exc:
                result = StepResult(None, lost=True, reason=str(exc))
            if not result.lost:
                return result
            output.flush()
            if not self.server.reconnect(result.reason or "SSH connection dropped"):
                return StepResult(None, control.stop_reason(), lost=True,
                                  reason=self.server.lost_reason(step.name, where))
            attach = True
