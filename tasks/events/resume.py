"""Where a job stands, read from its event log: what a console resumes after a restart.

Pure logic over the events (no I/O), so every resume decision is unit-tested. For each
server the log tells whether it finished, never started, stands between two steps, or
was inside a step; for a step, the byte offset of each stream already stored (the
``offset`` of the step's last ``output`` event per stream) is where reading goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tasks.events.catalogue import GATE_STATES
from tasks.running.output import line_bytes

STEPS, ON_FAILURE = "steps", "on_failure"
HEALTH = "health"  # a soak gate's second run of a finished server's health steps
PROBE = "probe"  # the runbook's version_probe, after the steps, when none reported it
VERSION_FACT = "version"  # the captured fact the console shows as a server's version


@dataclass
class StepPosition:
    """One step of one server: its phase (``steps`` or ``on_failure``) and index."""

    phase: str
    index: int


@dataclass
class OpenStep:
    """A step that was started and has no ``step_finished`` yet."""

    position: StepPosition
    started_ts: float
    offsets: dict[str, int] = field(default_factory=dict)
    last_stdout_line: str | None = None
    probes: int = 0  # a wait step's probes so far (its last wait_probe's attempt)


@dataclass
class HostProgress:
    """What the log says of one server.

    ``state`` is ``pending`` (never started), ``finished``, ``between`` (started, no step
    open) or ``in_step``. ``failure`` is the outcome of a failed step whose
    ``on_failure`` steps are under way (its ``on_failure`` says ``succeeded`` or
    ``failed`` once they ended). ``next_step`` is where a ``between`` server goes on;
    ``None`` there means its steps are all done. ``version_unreported``: a step started
    after the server last reported its version in this job (or none was reported yet).
    """

    name: str
    state: str = "pending"
    status: str | None = None
    open_step: OpenStep | None = None
    next_step: StepPosition | None = None
    facts: dict[str, str] = field(default_factory=dict)
    failure: dict[str, Any] | None = None
    version_unreported: bool = False
    probed: bool = False  # its version probe ran (it runs once)


@dataclass
class JobProgress:
    hosts: dict[str, HostProgress]
    started_batches: set[int]
    job_started: bool
    # Bytes of output lines stored (what PATCHBAY_MAX_JOB_OUTPUT counts), and the
    # servers whose output was already cut (their marker line is in the log).
    output_bytes: int = 0
    output_cut: set[str] = field(default_factory=set)
    # What the log says of each gate, by the batch it follows: {"state": "paused" |
    # "promoted" | "aborted" | "soak_started" | "soak_passed" | "soak_failed", ...the
    # event's data}.
    gates: dict[int, dict[str, Any]] = field(default_factory=dict)


def read_progress(events: Iterable[dict[str, Any]], host_names: list[str],
                  captures: dict[str, list[str | None]],
                  step_names: dict[str, list[str]]) -> JobProgress:
    """Fold a job's events (oldest first) into each server's progress.

    ``captures`` maps a phase to each step's ``capture`` name (or None); ``step_names``
    maps a phase to its step names (to name a failed step)."""
    hosts = {name: HostProgress(name) for name in host_names}
    started_batches: set[int] = set()
    job_started = False
    last_line: dict[str, str | None] = {}
    output_bytes = 0
    output_cut: set[str] = set()
    gates: dict[int, dict[str, Any]] = {}
    for event in events:
        kind, data, name = event["type"], event.get("data") or {}, event.get("host")
        if kind in GATE_STATES:
            batch = int(data.get("batch", 0)) - (1 if kind == "job_resumed" else 0)
            state = GATE_STATES[kind]
            if kind == "soak_finished":
                state = "soak_passed" if data.get("passed") else "soak_failed"
            gates[batch] = {**data, "state": state}
            continue
        if data.get("phase") == HEALTH:
            continue  # a soak's health check of a finished server: no progress of its own
        if kind == "job_started":
            job_started = True
        elif kind == "batch_started":
            started_batches.add(int(data.get("batch", 0)))
        elif kind == "output" and data.get("cut"):
            output_cut.add(name)
        elif kind == "output":
            output_bytes += line_bytes(data.get("lines") or [])
        if name not in hosts:
            continue
        host = hosts[name]
        if kind == "host_started":
            host.state, host.next_step = "between", StepPosition(STEPS, 0)
        elif kind == "step_started":
            position = StepPosition(data.get("phase", STEPS), int(data.get("index", 0)))
            host.state, host.next_step = "in_step", None
            host.open_step = OpenStep(position, float(event.get("ts") or 0))
            host.version_unreported = True
            last_line[name] = None
        elif kind == "output" and host.open_step is not None:
            stream = data.get("stream")
            if "offset" in data and stream:
                host.open_step.offsets[stream] = int(data["offset"])
            if stream == "stdout":
                for line in data.get("lines") or []:
                    if line.strip():
                        host.open_step.last_stdout_line = line.strip()
        elif kind == "step_finished" and host.open_step is not None:
            _close_step(host, data, captures, step_names)
        elif kind == "host_finished":
            host.state, host.status = "finished", data.get("status")
            host.open_step = host.next_step = None
        elif kind == "wait_probe" and host.open_step is not None:
            host.open_step.probes = max(host.open_step.probes, int(data.get("attempt", 0)))
    return JobProgress(hosts, started_batches, job_started, output_bytes, output_cut, gates)


def _close_step(host: HostProgress, data: dict[str, Any],
                captures: dict[str, list[str | None]],
                step_names: dict[str, list[str]]) -> None:
    step = host.open_step
    assert step is not None
    position = step.position
    host.open_step, host.state = None, "between"
    ok = data.get("status") == "ok"
    if position.phase == PROBE:
        host.probed, host.next_step = True, None
        if ok and step.last_stdout_line is not None:
            host.facts[VERSION_FACT] = step.last_stdout_line
            host.version_unreported = False
        return
    if ok:  # an on_failure step may report a fact too (the version it rolled back to)
        names = captures.get(position.phase, [])
        capture = names[position.index] if position.index < len(names) else None
        if capture and step.last_stdout_line is not None:
            host.facts[capture] = step.last_stdout_line
            if capture == VERSION_FACT:
                host.version_unreported = False
    if position.phase == STEPS:
        if ok:
            host.next_step = StepPosition(STEPS, position.index + 1)
            if position.index + 1 >= len(step_names.get(STEPS, [])):
                host.next_step = None
            return
        host.failure = {
            "status": "cancelled" if data.get("status") == "cancelled" else "failed",
            "failed_step": data.get("step"), "exit_code": data.get("exit_code"),
            "reason": data.get("reason"), "lost": bool(data.get("lost")),
        }
        if data.get("signal"):
            host.failure["signal"] = data["signal"]
        runs_rollback = (host.failure["status"] == "failed" and not host.failure["lost"]
                         and step_names.get(ON_FAILURE))
        host.next_step = StepPosition(ON_FAILURE, 0) if runs_rollback else None
        return
    if not ok:
        if host.failure is not None:
            host.failure["reason"] = (f"{host.failure.get('reason')}; on_failure step "
                                      f"{data.get('step')!r} also failed")
            host.failure["on_failure"] = "failed"
        host.next_step = None
        return
    following = position.index + 1
    has_more = following < len(step_names.get(ON_FAILURE, []))
    host.next_step = StepPosition(ON_FAILURE, following) if has_more else None
    if not has_more and host.failure is not None:
        host.failure["on_failure"] = "succeeded"
