"""Outcomes: how a step ended and how a server ended, as values.

Each outcome becomes an event's data (``step_finished``, ``host_finished``) only where
that event is written, through its ``to_data``/``finished_data``. Those dicts are the
public event contract: their keys, which keys appear when, and their order stay exactly
as documented (docs/live-api.md), so the shapes below mirror them field by field. Judging
a step's result and naming why a server was lost are pure rules, here too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tasks.events.resume import VERSION_FACT, StepPosition
from tasks.planning.job_plan import HostPlan
from tasks.transport.protocol import StepResult


@dataclass(frozen=True)
class StepOutcome:
    """How one step ended."""

    status: str  # "ok", "failed" or "cancelled"
    exit_code: int | None = None
    reason: str | None = None
    lost: bool = False
    last_line: str | None = None  # its last line of stdout (a captured fact)
    signal: str | None = None  # the signal that stopped it ("TERM", "KILL")

    def finished_data(self, step: str, position: StepPosition,
                      duration: float) -> dict[str, Any]:
        """The data of this step's ``step_finished`` event."""
        data: dict[str, Any] = {
            "step": step, "index": position.index, "phase": position.phase,
            "status": self.status, "exit_code": self.exit_code, "duration": duration,
            "reason": self.reason}
        if self.lost:
            data["lost"] = True
        if self.signal:
            data["signal"] = self.signal
        return data


@dataclass(frozen=True)
class ProbeResult:
    """One probe of a wait step: whether its output matched, and what it showed."""

    matched: bool
    exit_code: int | None
    shown: list[str]  # the last lines of its output, masked (stderr marked "! ")


def judge(step: str, timeout: float, result: StepResult) -> StepOutcome:
    """How step ``step`` ended, from what the transport saw (``timeout``: its limit)."""
    code = result.exit_code
    if result.lost:
        status = "cancelled" if result.stopped == "cancel" else "failed"
        return StepOutcome(status, None, result.reason or "SSH connection dropped", lost=True)
    if result.stopped:
        # Stopped by a signal we sent: its exit status (paramiko's -1, the shell's
        # 128 + N) says only that, and the signal is named instead.
        if result.signal and (code is None or code < 0 or code > 128):
            code = None
        stopped = _judge_stopped(timeout, result, code)
        if stopped is not None:
            return stopped
    if result.reason and code is None:
        return StepOutcome("failed", None, result.reason)
    if code == 0:
        return StepOutcome("ok", 0)
    if result.reason:
        return StepOutcome("failed", code, result.reason)
    if code is None or code == -1:
        return StepOutcome("failed", code, f"step {step!r} was killed by a signal")
    return StepOutcome("failed", code, f"step {step!r} exited with code {code}")


def _judge_stopped(timeout: float, result: StepResult, code: int | None
                   ) -> StepOutcome | None:
    """A step we stopped (``code``: its exit status, None when only the signal says)."""
    stopped = f"stopped ({result.signal})" if result.signal else "stopped"
    if result.stopped == "timeout":
        text = f"timed out after {timeout:g} s"
        return StepOutcome("failed", code, f"{text}, {stopped}" if result.signal else text,
                           signal=result.signal)
    if result.stopped == "cancel":
        return StepOutcome("cancelled", code, f"{stopped}: job cancelled",
                           signal=result.signal)
    if result.stopped == "output_limit":
        return StepOutcome("failed", code, f"{stopped}: its output passed the "
                           "limit (PATCHBAY_MAX_STEP_OUTPUT)", signal=result.signal)
    return None


def wait_timed_out(timeout: float, until: str, on_timeout: str) -> StepOutcome:
    """A wait step whose probes never matched ``until`` within ``timeout``."""
    text = f"no probe matched {until} within {timeout:g} s"
    if on_timeout == "proceed":
        return StepOutcome("ok", None, f"{text}; going on (on_timeout: proceed)")
    return StepOutcome("failed", None, f"timed out: {text}")


def lost_reason(host: str, cancelled: bool, reattach_timeout: float,
                step: str | None = None, host_dir: str | None = None) -> str:
    """Why server ``host`` is lost: unreachable past ``reattach_timeout`` (or the job
    was cancelled meanwhile), leaving step ``step`` running in ``host_dir``."""
    if cancelled:
        lead = f"lost: job cancelled while {host} was unreachable"
    else:
        lead = f"lost: no SSH connection to {host} for {reattach_timeout:g} s"
    if step is None or host_dir is None:
        return lead
    return (f"{lead}; step {step!r} was left running on the server "
            f"(not killed), its output so far is kept there in {host_dir}")


# -- how a server ended ----------------------------------------------------------------


@dataclass(frozen=True)
class HostEnding:
    """A server that ended with no step failing it: it succeeded, was cancelled before a
    step, never started, could not connect (``failed_step="connect"``) or hit a bug."""

    status: str
    reason: str | None = None
    failed_step: str | None = None
    lost = False
    on_failure = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status}
        if self.failed_step is not None:
            data["failed_step"] = self.failed_step
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@dataclass(frozen=True)
class StepFailed:
    """A server whose step failed (or was cancelled), and what its on_failure steps did:
    ``on_failure`` is ``succeeded`` or ``failed`` once they ran. Its fields are those of
    :attr:`HostProgress.failure <tasks.events.resume.HostProgress>`, read from the log."""

    status: str  # "failed" or "cancelled"
    failed_step: str | None
    exit_code: int | None
    reason: str | None
    lost: bool = False
    signal: str | None = None
    on_failure: str | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "failed_step": self.failed_step,
                                "exit_code": self.exit_code, "reason": self.reason}
        if self.lost:
            data["lost"] = True
        if self.signal:
            data["signal"] = self.signal
        if self.on_failure is not None:
            data["on_failure"] = self.on_failure
        return data

    def rollback_failed(self, step: str) -> StepFailed:
        """The same failure once on_failure step ``step`` failed too."""
        return replace(self, reason=f"{self.reason}; on_failure step {step!r} also failed",
                       on_failure="failed")


@dataclass(frozen=True)
class ServerLost:
    """A resumed server the console could not reach again, inside step ``failed_step``
    (None: between steps)."""

    status: str  # "failed", or "cancelled" when the job was cancelled meanwhile
    reason: str
    failed_step: str | None = None
    lost = True
    on_failure = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "reason": self.reason, "lost": True}
        if self.failed_step is not None:
            data["failed_step"] = self.failed_step
        return data


@dataclass(frozen=True)
class ServerInterrupted:
    """A server in progress when its job stopped for good (a job that cannot be
    resumed), inside step ``failed_step`` (None: before any)."""

    failed_step: str | None
    reason: str
    status = "interrupted"
    lost = False
    on_failure = None

    def to_data(self) -> dict[str, Any]:
        return {"status": self.status, "failed_step": self.failed_step,
                "reason": self.reason}


Ending = HostEnding | StepFailed | ServerLost | ServerInterrupted


@dataclass(frozen=True)
class HostOutcome:
    """How one server ended: the data of its ``host_finished`` event."""

    ending: Ending
    facts: dict[str, str] | None = None  # what it reported (None: not known)
    version_state: str | None = None  # see version_state()
    duration: float | None = None

    @property
    def status(self) -> str:
        return self.ending.status

    @property
    def lost(self) -> bool:
        return self.ending.lost

    def to_data(self) -> dict[str, Any]:
        data = self.ending.to_data()
        if self.facts is not None:
            data["facts"] = dict(self.facts)
        if self.version_state:
            data["version_state"] = self.version_state
        if self.duration is not None:
            data["duration"] = self.duration
        return data


def host_outcome(host: HostPlan, ending: Ending, facts: dict[str, str],
                 unreported: bool) -> HostOutcome:
    """A server's outcome: ``ending`` with the facts it reported, what became of its
    version, and the version its on_failure steps rolled it back to, when they
    reported one."""
    version = facts.get(VERSION_FACT)
    if isinstance(ending, StepFailed) and ending.on_failure == "succeeded" \
            and version is not None and not unreported:
        ending = replace(ending, reason=f"{ending.reason}; rolled back to {version}")
    return HostOutcome(ending, dict(facts),
                       version_state(host, ending.status, facts, unreported))


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
