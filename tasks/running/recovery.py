"""A job found running when its owner is gone (a restarted console, a takeover): what
its log says of its progress, to resume it, or, when it cannot be resumed, its end as
``interrupted``."""

from __future__ import annotations

from typing import Any

from tasks.events.resume import (
    ON_FAILURE,
    PROBE,
    STEPS,
    VERSION_FACT,
    JobProgress,
    read_progress,
)
from tasks.events.writer import EventLog
from tasks.planning.job_plan import JobPlan
from tasks.planning.runbook_schema import VERSION_PROBE_STEP
from tasks.rollout.strategy import count_statuses
from tasks.running.outcomes import HostOutcome, ServerInterrupted


def progress_of(plan: JobPlan, events: list[dict[str, Any]]) -> JobProgress:
    """What a job's log ``events`` say of its progress (every server has the same
    steps: the first one's name them)."""
    first = plan.hosts[0] if plan.hosts else None
    return read_progress(
        events, [h.name for h in plan.hosts],
        {STEPS: [s.capture for s in first.steps] if first else [],
         ON_FAILURE: [s.capture for s in first.on_failure] if first else [],
         PROBE: [VERSION_FACT]},
        {STEPS: [s.name for s in first.steps] if first else [],
         ON_FAILURE: [s.name for s in first.on_failure] if first else [],
         PROBE: [VERSION_PROBE_STEP]})


def reports_version(plan: dict[str, Any] | None) -> bool:
    """Whether a server's stored plan has a step that reports its version (a plan
    recorded before plans were stored is assumed to)."""
    if plan is None or plan.get("version_probe"):
        return True
    return any(step.get("capture") == VERSION_FACT
               for phase in (STEPS, ON_FAILURE) for step in plan.get(phase) or [])


def interrupt(events: EventLog, job_id: int, owner_id: int | None, last_seq: int,
              unfinished: list[tuple[str, str | None, bool]], finished: list[str],
              why: str) -> None:
    """End a job that cannot be resumed: its unfinished servers and the job itself
    become ``interrupted`` (they can be re-run), and its server locks go. A server
    stopped inside a step of a runbook that reports versions may run another build
    now: its last reported version becomes unverified. ``unfinished``: (name, the step
    it was in, whether its runbook reports versions); ``finished``: the others' statuses."""
    events.open_job(job_id, owner_id, last_seq)
    counts = count_statuses(finished + ["interrupted"] * len(unfinished))
    for name, step, reports in unfinished:
        outcome = HostOutcome(ServerInterrupted(
            step, f"the console stopped while this server was in progress, and {why}"),
            version_state="unverified" if step is not None and reports else None)
        events.append(job_id, "host_finished", name, outcome.to_data())
    events.append(job_id, "job_finished", None, {
        "status": "interrupted", "counts": counts,
        "reason": "the console process stopped before the job finished"})
    events.wait_written()
