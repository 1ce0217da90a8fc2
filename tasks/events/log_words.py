"""The downloaded log's words for each event type: one line of text from an event's data.

Each function is one type's ``log`` form in the catalogue (:mod:`tasks.events.catalogue`),
which adds the ``[server]`` or ``[job]`` prefix; output lines have no form here (they are
the log's lines as the server printed them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LogText = Callable[[dict[str, Any]], str]


def batch_number(data: dict[str, Any]) -> int:
    """The 1-based number of the event's batch (a missing or null ``batch`` is the first)."""
    return (data.get("batch") or 0) + 1


def _outcome_details(data: dict[str, Any]) -> str:
    """``, exit code 2, 1.5 s, reason`` (what of it the event has)."""
    parts = []
    if data.get("exit_code") is not None:
        parts.append(f"exit code {data['exit_code']}")
    if data.get("duration") is not None:
        parts.append(f"{data['duration']} s")
    if data.get("reason"):
        parts.append(str(data["reason"]))
    return ", " + ", ".join(parts) if parts else ""


_PHASE_NOTE = {"on_failure": " (on failure)", "health": " (soak health check)",
               "probe": " (no step reported the build)"}


def step_started(data: dict[str, Any]) -> str:
    phase = data.get("phase")
    text = f"step {data.get('step')} started" + (
        _PHASE_NOTE.get(phase, "") if isinstance(phase, str) else "")
    if isinstance(data.get("wait"), dict):
        wait = data["wait"]
        text += f": waiting for {wait.get('until')} every {wait.get('every')} s, up to " \
                f"{wait.get('timeout')} s, then {wait.get('on_timeout')}"
    return text


def wait_probe(data: dict[str, Any]) -> str:
    """One line per probe, ending with its last output line."""
    output = data.get("output") or []
    return f"probe {data.get('attempt')} of {data.get('step')}: exit code " \
           f"{data.get('exit_code')}, {'matched' if data.get('matched') else 'no match'}, " \
           f"{data.get('remaining')} s left" + (f": {output[-1]}" if output else "")


def soak_finished(data: dict[str, Any]) -> str:
    if data.get("passed"):
        return f"batch {batch_number(data)} passed its health checks after the soak"
    return data.get("reason") or f"batch {batch_number(data)} failed its health check " \
        f"after the soak ({', '.join(data.get('failed') or [])})"


def finished(data: dict[str, Any]) -> str:
    text = f"finished: {data.get('status')}" + _outcome_details(data)
    if data.get("counts"):
        text += " (" + ", ".join(f"{n} {s}" for s, n in data["counts"].items()) + ")"
    return text


def job_started(data: dict[str, Any]) -> str:
    return f"started: {data.get('runbook')} on {len(data.get('servers') or [])} server(s)"


def batch_started(data: dict[str, Any]) -> str:
    return f"batch {data.get('batch', 0) + 1}: {', '.join(data.get('servers') or [])}"


def step_finished(data: dict[str, Any]) -> str:
    return f"step {data.get('step')}: {data.get('status')}" + _outcome_details(data)


def host_reconnecting(data: dict[str, Any]) -> str:
    return f"connection lost ({data.get('reason')}); reconnecting for up to " \
           f"{data.get('timeout')} s"


def job_paused(data: dict[str, Any]) -> str:
    return f"paused after batch {batch_number(data)}: waiting at the gate " \
           "for an operator to promote or abort"


def job_aborted(data: dict[str, Any]) -> str:
    return f"aborted at the gate by {data.get('by')} after batch {batch_number(data)}"


def soak_started(data: dict[str, Any]) -> str:
    return f"soaking batch {batch_number(data)} for {data.get('seconds')} s, " \
           "then its health checks again"


def events_pruned(data: dict[str, Any]) -> str:
    return f"events pruned after {data.get('days')} days ({data.get('events')} " \
           "events removed)"

