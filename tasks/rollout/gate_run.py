"""The gate between two batches of a running rollout: a manual gate pauses the job
until an operator promotes or aborts it (through any console node: the request is
written to the job's row), a soak gate waits and runs the batch's health steps again.

Not pure like :mod:`tasks.rollout.strategy`: a gate waits, writes the job's events and
checks servers; what it decides comes back as a :class:`GateOutcome`. ``known`` is what
the log already says of a gate (a resumed job goes on from there).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tasks.planning.job_plan import HostPlan
from tasks.rollout.strategy import soak_stop
from tasks.running.context import CANCEL_POLL_SECONDS, RunContext
from tasks.running.server_run import ServerRun


@dataclass(frozen=True)
class GateOutcome:
    """What a gate decided: go on (no ``stop_reason``), or stop the rollout."""

    stop_reason: str | None = None
    aborted: bool = False  # an operator aborted the rollout here


GO_ON = GateOutcome()


def aborted_by(by: str | None) -> GateOutcome:
    return GateOutcome(f"aborted at the gate by {by or 'an operator'}", aborted=True)


class GateRun:
    """The gates of one job's rollout."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    # -- manual -------------------------------------------------------------------------

    def manual(self, index: int, known: dict[str, Any] | None) -> GateOutcome:
        """Pause after batch ``index`` until promoted or aborted (or the job cancelled)."""
        state = known["state"] if known else None
        if state == "promoted":
            return GO_ON
        if state == "aborted":
            return aborted_by((known or {}).get("by"))
        context = self.context
        if state != "paused":
            context.append("job_paused", None, {"batch": index, "reason": "gate",
                                                "next_batch": index + 1})
            # Written before waiting: a promote is accepted only once the job reads paused.
            context.events.wait_written()
        action, by = self._await_decision()
        if action == "promote":
            context.append("job_resumed", None, {"by": by, "batch": index + 1})
            context.events.wait_written()  # the request is cleared before the next gate
        elif action == "abort":
            context.append("job_aborted", None, {"by": by, "batch": index})
            context.events.wait_written()
            return aborted_by(by)
        return GO_ON

    def _await_decision(self) -> tuple[str, str | None]:
        """Wait for promote or abort (written by any console process), or a cancel."""
        context = self.context
        while True:
            context.raise_if_fenced()
            if context.cancel.is_set():
                return "cancel", None
            request = context.world.gate_request(context.job_id)
            if request is not None:
                return request
            context.gate_poke.wait(CANCEL_POLL_SECONDS)
            context.gate_poke.clear()

    # -- soak ---------------------------------------------------------------------------

    def soak(self, index: int, succeeded: list[HostPlan],
             known: dict[str, Any] | None) -> GateOutcome:
        """Wait the strategy's soak after batch ``index``, then check the health of its
        servers that ``succeeded`` again; any failing stops the rollout."""
        context = self.context
        seconds = context.plan.strategy.soak_seconds or 0.0
        state = known["state"] if known else None
        if state == "soak_passed":
            return GO_ON
        if state == "soak_failed":
            return GateOutcome((known or {}).get("reason") or soak_stop(index, seconds, []))
        if state == "soak_started":
            until = float((known or {}).get("until") or time.time())
        else:
            until = time.time() + seconds
            context.append("soak_started", None, {"batch": index, "seconds": seconds,
                                                  "until": round(until, 3)})
        while not context.cancel.is_set():
            context.raise_if_fenced()
            remaining = until - time.time()
            if remaining <= 0:
                break
            context.cancel.wait(min(remaining, CANCEL_POLL_SECONDS))
        if context.cancel.is_set():
            return GO_ON
        failed = self._recheck_health(succeeded)
        data: dict[str, Any] = {"batch": index, "passed": not failed, "failed": failed}
        outcome = GO_ON
        if failed:
            outcome = GateOutcome(soak_stop(index, seconds, failed))
            data["reason"] = outcome.stop_reason
        context.append("soak_finished", None, data)
        return outcome

    def _recheck_health(self, hosts: list[HostPlan]) -> list[str]:
        """Run the health steps again on ``hosts`` (up to ``parallel`` at once); the
        names of those where one failed."""
        queue = deque(hosts)
        failed: list[str] = []
        lock = threading.Lock()

        def worker() -> None:
            while not self.context.abandoned.is_set():
                with lock:
                    if not queue:
                        return
                    host = queue.popleft()
                with self.context.world.host_slots:
                    healthy = ServerRun(self.context, host).check_health()
                if not healthy:
                    with lock:
                        failed.append(host.name)

        self.context.in_parallel(min(self.context.plan.strategy.parallel, len(hosts)),
                                 worker)
        return sorted(failed)
