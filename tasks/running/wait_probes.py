"""Wait steps: probe every ``every`` seconds until the probe's output matches ``until``,
or the wait times out.

Each probe is a short detached step of its own (a run directory per probe, named
``<step key>w<attempt>-<random>``), reported as one ``wait_probe`` event; a resumed job
goes on probing until the deadline set when the wait started.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from secrets import token_hex
from typing import TYPE_CHECKING

from tasks.events.fencing import JobFenced
from tasks.events.resume import ON_FAILURE, OpenStep, StepPosition
from tasks.planning import safe_regex
from tasks.planning.rendered_steps import RenderedStep
from tasks.planning.secrets import Masker
from tasks.running.outcomes import ProbeResult, StepOutcome, wait_timed_out
from tasks.transport.protocol import StepLocation, StepResult, TransportError

if TYPE_CHECKING:
    from tasks.running.step_driver import StepDriver

PROBE_TIMEOUT = 30.0  # a probe's time limit when its step names none
PROBE_LINES_SHOWN = 20  # of a probe's output, the last lines its wait_probe event carries
PROBE_LINE_CHARS = 500
PROBE_OUTPUT_KEPT = 64 * 1024  # bytes of a probe's stdout kept to match `until` against


class ProbeControl:
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


class ProbeOutput:
    """A probe's output: its stdout kept to match against, the last lines shown."""

    def __init__(self, mask: Masker) -> None:
        self.mask = mask
        self.kept: list[str] = []
        self.kept_bytes = 0
        self.shown: deque[str] = deque(maxlen=PROBE_LINES_SHOWN)

    def line(self, stream: str, line: str, _offset: int) -> None:
        if stream == "stdout" and self.kept_bytes < PROBE_OUTPUT_KEPT:
            self.kept.append(line)
            self.kept_bytes += len(line) + 1
        text = self.mask(line)[:PROBE_LINE_CHARS]
        self.shown.append(text if stream == "stdout" else f"! {text}")

    def restart(self) -> None:
        """The probe starts again (after a reconnect): forget its lines."""
        self.kept.clear()
        self.shown.clear()


class WaitProbes:
    """Runs the wait steps of one server, for its step driver."""

    def __init__(self, driver: StepDriver) -> None:
        self.driver = driver
        self.server = driver.server
        self.context = driver.context
        self.host = driver.host

    def run(self, step: RenderedStep, position: StepPosition,
            resumed: OpenStep | None) -> StepOutcome:
        """Probe until a match or the deadline; ``resumed``: the log shows it under way."""
        wait = step.wait
        assert wait is not None
        base = self.context.location(self.host.name, position)
        if resumed is None:
            started_wall = time.time()
            self.context.append("step_started", self.host.name, {
                "step": step.name, "index": position.index, "phase": position.phase,
                "command": step.shown, "timeout": wait.timeout, "run_dir": base.host_dir,
                "wait": {**wait.to_json(), "deadline": round(started_wall + wait.timeout, 3)}})
        else:
            started_wall = resumed.started_ts or time.time()
        started = time.monotonic()
        outcome = self._probe_until(step, position, base, started_wall + wait.timeout,
                                    resumed.probes if resumed is not None else 0)
        return self.driver.finished(step, position, outcome, started)

    def _probe_until(self, step: RenderedStep, position: StepPosition, base: StepLocation,
                     deadline: float, attempt: int) -> StepOutcome:
        """Probe after probe (``attempt``: how many ran already) until one matches or
        ``deadline`` passes; a job's cancel stops it, except in on_failure steps."""
        wait = step.wait
        assert wait is not None
        cancel = self.context.cancel if position.phase != ON_FAILURE else None
        while True:
            if cancel is not None and cancel.is_set():
                return StepOutcome("cancelled", None, "job cancelled while waiting")
            attempt += 1
            probe = self._probe(step, base, attempt, cancel)
            if probe is None:  # the connection is gone for good
                return StepOutcome("cancelled" if self.context.cancel.is_set() else "failed",
                                   None, self.server.lost_reason(), lost=True)
            remaining = deadline - time.time()
            self.context.append("wait_probe", self.host.name, {
                "step": step.name, "index": position.index, "phase": position.phase,
                "attempt": attempt, "exit_code": probe.exit_code, "output": probe.shown,
                "matched": probe.matched, "remaining": round(max(remaining, 0.0), 1)})
            outcome: StepOutcome | None = None
            if probe.matched:
                plural = "" if attempt == 1 else "s"
                outcome = StepOutcome("ok", 0, f"matched {wait.until} after {attempt} "
                                      f"probe{plural}")
            elif remaining <= 0:
                outcome = wait_timed_out(wait.timeout, wait.until, wait.on_timeout)
            elif cancel is not None:
                cancel.wait(min(wait.every, remaining))
            else:
                time.sleep(min(wait.every, remaining))
            self.context.raise_if_fenced()
            if outcome is not None:
                return outcome

    def _probe(self, step: RenderedStep, base: StepLocation, attempt: int,
               cancel: threading.Event | None) -> ProbeResult | None:
        """Run the wait's probe once; None when the connection is lost and cannot be
        had back."""
        wait = step.wait
        assert wait is not None
        output = ProbeOutput(Masker(self.host.secrets))
        timeout = step.timeout or PROBE_TIMEOUT
        control = ProbeControl(cancel, time.time() + timeout, self.context.abandoned)
        while True:
            where = StepLocation(base.root, base.job_uid, base.host,
                                 f"{base.key}w{attempt}-{token_hex(3)}")
            try:
                result = self.server.session.start_step(where, step.command, output.line,
                                                        control, self.host.secrets)
            except TransportError as exc:
                result = StepResult(None, lost=True, reason=str(exc))
            if not result.lost:
                break
            if not self.server.reconnect(result.reason or "SSH connection dropped"):
                return None
            output.restart()
        if result.stopped == "timeout":
            output.shown.append(f"! probe timed out after {timeout:g} s")
        matched = result.exit_code == 0 and safe_regex.search_lines(wait.until,
                                                                     "\n".join(output.kept))
        return ProbeResult(matched, result.exit_code, list(output.shown))
