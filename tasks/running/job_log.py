"""The console's own log of its jobs: one line when a job starts here (or resumes after
a restart or takeover) and one when it ends, at INFO through the logger
``patchbay.jobs``. The lines say what a job's page shows of it (its id, runbook, kind,
who started it, its servers; its result, counts and duration) and never a parameter or
a command, so no secret can reach the log through them."""

from __future__ import annotations

import logging
from typing import Any

from tasks.planning.job_plan import JobPlan

log = logging.getLogger("patchbay.jobs")
NAMES_SHOWN = 20  # servers named on a line; the rest are counted


def servers_text(names: list[str]) -> str:
    """``servers=3 (gs-01,gs-02,gs-03)``; past NAMES_SHOWN, ``…,+12 more``."""
    shown = ",".join(names[:NAMES_SHOWN])
    if len(names) > NAMES_SHOWN:
        shown += f",+{len(names) - NAMES_SHOWN} more"
    return f"servers={len(names)} ({shown})"


def _about(plan: JobPlan, user: str | None) -> str:
    return (f"runbook={plan.runbook_name} kind={plan.kind} user={user or '-'} "
            f"{servers_text([host.name for host in plan.hosts])}")


def job_started(job_id: int, plan: JobPlan, user: str | None, resumed: bool) -> None:
    """``job #12 started: runbook=game-update kind=runbook user=alice servers=8 (…)``"""
    log.info("job #%s %s: %s", job_id, "resumed" if resumed else "started",
             _about(plan, user))


def job_finished(job_id: int, plan: JobPlan, user: str | None,
                 finished: dict[str, Any]) -> None:
    """``job #12 finished: result=failed duration=12.3s runbook=… (succeeded=7 failed=1)``
    with the rollout's stop reason last, if any."""
    counts = " ".join(f"{status}={count}"
                      for status, count in (finished.get("counts") or {}).items() if count)
    line = (f"result={finished.get('status')} duration={finished.get('duration')}s "
            f"{_about(plan, user)} ({counts})")
    if finished.get("reason"):
        line += f" reason={finished['reason']}"
    log.info("job #%s finished: %s", job_id, line)
