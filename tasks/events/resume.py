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
    progress = JobProgress({name: HostProgress(name) for name in host_names}, set(), False)
    for event in events:
        kind, data, name = event["type"], event.get("data") or {}, event.get("host")
        if kind in GATE_STATES:
            _read_gate(progress.gates, kind, data)
            continue
        if data.get("phase") == HEALTH:
            continue  # a soak's health check of a finished server: no progress of its own
        _read_job_event(progress, kind, data, name)
        if name in progress.hosts:
            _read_host_event(progress.hosts[name], event, captures, step_names)
    return progress


def _read_gate(gates: dict[int, dict[str, Any]], kind: str, data: dict[str, Any]) -> None:
    """A gate event: its gate's state, keyed by the batch the gate follows."""
    batch = int(data.get("batch", 0)) - (1 if kind == "job_resumed" else 0)
    state = GATE_STATES[kind]
    if kind == "soak_finished":
        state = "soak_passed" if data.get("passed") else "soak_failed"
    gates[batch] = {**data, "state": state}


def _read_job_event(progress: JobProgress, kind: str, data: dict[str, Any],
                    name: str | None) -> None:
    """What an event says of the whole job: started, batches, output stored or cut."""
    if kind == "job_started":
        progress.job_started = True
    elif kind == "batch_started":
        progress.started_batches.add(int(data.get("batch", 0)))
    elif kind == "output" and data.get("cut"):
        progress.output_cut.add(name)
    elif kind == "output":
        progress.output_bytes += line_bytes(data.get("lines") or [])


def _read_host_event(host: HostProgress, event: dict[str, Any],
                     captures: dict[str, list[str | None]],
                     step_names: dict[str, list[str]]) -> None:
    """What an event of this server says of where it stands."""
    kind, data = event["type"], event.get("data") or {}
    if kind == "host_started":
        host.state, host.next_step = "between", StepPosition(STEPS, 0)
    elif kind == "step_started":
        position = StepPosition(data.get("phase", STEPS), int(data.get("index", 0)))
        host.state, host.next_step = "in_step", None
        host.open_step = OpenStep(position, float(event.get("ts") or 0))
        host.version_unreported = True
    elif kind == "output" and host.open_step is not None:
        _read_output(host.open_step, data)
    elif kind == "step_finished" and host.open_step is not None:
        _close_step(host, data, captures, step_names)
    elif kind == "host_finished":
        host.state, host.status = "finished", data.get("status")
        host.open_step = host.next_step = None
    elif kind == "wait_probe" and host.open_step is not None:
        host.open_step.probes = max(host.open_step.probes, int(data.get("attempt", 0)))


def _read_output(step: OpenStep, data: dict[str, Any]) -> None:
    """An open step's output: the offset stored per stream, its last stdout line."""
    stream = data.get("stream")
    if "offset" in data and stream:
        step.offsets[stream] = int(data["offset"])
    if stream == "stdout":
        for line in data.get("lines") or []:
            if line.strip():
                step.last_stdout_line = line.strip()


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
        _close_runbook_step(host, position, ok, data, step_names)
    else:
        _close_on_failure_step(host, position, ok, data, step_names)


def _close_runbook_step(host: HostProgress, position: StepPosition, ok: bool,
                        data: dict[str, Any], step_names: dict[str, list[str]]) -> None:
    """One of the runbook's steps ended: the next one, or the failure (and whether its
    on_failure steps run)."""
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


def _close_on_failure_step(host: HostProgress, position: StepPosition, ok: bool,
                           data: dict[str, Any], step_names: dict[str, list[str]]) -> None:
    """One of the on_failure steps ended: the next one, or how they went."""
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
