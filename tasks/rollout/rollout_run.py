"""A job's rollout as it runs: the plan's batches in order, each worked by up to
``parallel`` worker tasks taking the next server (:class:`ServerRun`), the stop rules of
:mod:`tasks.rollout.strategy` applied as servers and batches finish, and the gate
between batches (:mod:`tasks.rollout.gate_run`).

A resumed rollout goes on where its log ends: servers it had finished count as before,
servers under way go on first (even after a stop: they must reach a known state), and
the batches and gates already passed are not announced again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from tasks.events.resume import HostProgress, JobProgress
from tasks.planning.job_plan import HostPlan
from tasks.rollout.gate_run import GateOutcome, GateRun
from tasks.rollout.strategy import (
    canary_stop,
    count_statuses,
    failure_stop,
    final_status,
    not_started_outcome,
)
from tasks.running.context import RunContext
from tasks.running.outcomes import HostEnding
from tasks.running.server_run import ServerRun

log = logging.getLogger(__name__)


class RolloutRun:
    """One job's rollout, from ``job_started`` to ``job_finished``."""

    def __init__(self, context: RunContext, progress: JobProgress | None) -> None:
        self.context = context
        self.plan = context.plan
        self.progress = progress  # what the log says already (a resumed job)
        self.hosts_progress: dict[str, HostProgress] = progress.hosts if progress else {}
        self.batches: list[list[HostPlan]] = []
        self.results: dict[str, str] = {}  # server name -> its final status
        self.failures = 0
        self.stop_reason: str | None = None
        self.aborted = False  # an operator aborted the rollout at a gate
        self.lock = threading.Lock()
        self.limit = self.plan.strategy.failure_limit(len(self.plan.hosts))
        self.gates = GateRun(context)

    @property
    def stopping(self) -> bool:
        """Cancelled or stopped: no server starts any more."""
        return self.context.cancel.is_set() or bool(self.stop_reason)

    def run(self) -> dict[str, Any]:
        """Run the rollout to its end; returns what ``job_finished`` said."""
        started = time.monotonic()
        self.batches = self.plan.batches()
        if self.progress is None or not self.progress.job_started:
            self._announce()
        self._take_finished()
        try:
            self._run_batches()
            self._end_unstarted()
        except Exception as exc:  # noqa: BLE001 - a bug must still end the job visibly
            log.exception("job %s crashed", self.context.job_id)
            for host in self.plan.hosts:
                if host.name not in self.results:
                    self._host_finished(host, HostEnding("failed", f"internal error: {exc}"))
        counts = count_statuses(list(self.results.values()))
        finished: dict[str, Any] = {
            "status": final_status(counts, len(self.plan.hosts),
                                   self.context.cancel.is_set() or self.aborted),
            "counts": counts, "duration": round(time.monotonic() - started, 3)}
        if self.stop_reason:
            finished["reason"] = self.stop_reason
        self.context.append("job_finished", None, finished)
        self.context.events.wait_written()
        return finished

    def _announce(self) -> None:
        plan = self.plan
        self.context.append("job_started", None, {
            "runbook": plan.runbook_name, "kind": plan.kind, "params": plan.shown_params,
            "strategy": plan.strategy.model_dump(),
            "servers": [h.name for h in plan.hosts],
            "batches": [[h.name for h in batch] for batch in self.batches],
            "steps": plan.step_names,
        })

    def _take_finished(self) -> None:
        """Servers a resumed job had already finished count as before the restart."""
        for host in self.plan.hosts:
            known = self.hosts_progress.get(host.name)
            if known is not None and known.state == "finished":
                self.results[host.name] = known.status or "failed"
        self.failures = sum(1 for status in self.results.values() if status == "failed")
        self.stop_reason = failure_stop(self.failures, self.limit,
                                        self.plan.strategy.max_failures)
        if self.batches and all(h.name in self.results for h in self.batches[0]):
            failed = sum(1 for h in self.batches[0] if self.results[h.name] == "failed")
            self.stop_reason = self.stop_reason or canary_stop(0, len(self.batches), failed)

    def _run_batches(self) -> None:
        started_batches = self.progress.started_batches if self.progress else set()
        gates = self.progress.gates if self.progress else {}
        for index, batch in enumerate(self.batches):
            todo = [h for h in batch if h.name not in self.results]
            if self.stopping:
                # Servers already under way go on to a known state; no new ones start.
                todo = [h for h in todo if self._under_way(h)]
            if todo:
                if index not in started_batches:
                    self.context.append("batch_started", None,
                                        {"batch": index, "servers": [h.name for h in batch]})
                self._run_batch(todo)
                with self.lock:
                    failed = sum(1 for h in batch if self.results.get(h.name) == "failed")
                    self.stop_reason = self.stop_reason or canary_stop(
                        index, len(self.batches), failed)
            if index + 1 < len(self.batches):
                self._pass_gate(index, gates.get(index))

    def _end_unstarted(self) -> None:
        """The servers the rollout never reached end cancelled or skipped."""
        for host in self.plan.hosts:
            if host.name not in self.results:
                status, reason = not_started_outcome(self.context.cancel.is_set(),
                                                     self.stop_reason)
                self._host_finished(host, HostEnding(status, reason))

    def _host_finished(self, host: HostPlan, ending: HostEnding) -> None:
        self.context.append("host_finished", host.name, ending.to_data())
        self.results[host.name] = ending.status

    def _under_way(self, host: HostPlan) -> bool:
        known = self.hosts_progress.get(host.name)
        return known is not None and known.state != "pending"

    # -- one batch -------------------------------------------------------------------

    def _run_batch(self, batch: list[HostPlan]) -> None:
        # Servers under way come first, so a stop lets them finish and skips the rest.
        queue = deque(sorted(batch, key=lambda h: 0 if self._under_way(h) else 1))
        count = min(self.plan.strategy.parallel, len(batch))

        def worker() -> None:
            while not self.context.abandoned.is_set():
                with self.lock:
                    if not queue:
                        return
                    # A server already under way goes on even after a stop: its
                    # step is running, and it must reach a known state.
                    if not self._under_way(queue[0]) and self.stopping:
                        return
                    host = queue.popleft()
                with self.context.world.host_slots:
                    status = ServerRun(self.context, host,
                                       self.hosts_progress.get(host.name)).run_safely()
                self._server_finished(host, status)

        self.context.in_parallel(count, worker)

    def _server_finished(self, host: HostPlan, status: str) -> None:
        with self.lock:
            self.results[host.name] = status
            if status == "failed":
                self.failures += 1
                self.stop_reason = self.stop_reason or failure_stop(
                    self.failures, self.limit, self.plan.strategy.max_failures)

    # -- between batches ----------------------------------------------------------------

    def _pass_gate(self, index: int, known: dict[str, Any] | None) -> None:
        """The strategy's gate after batch ``index``: go on (auto), pause until an
        operator promotes or aborts (manual), or soak and re-check health (soak).
        ``known`` is what the log says of this gate already (a resumed job)."""
        gate = self.plan.strategy.gate
        if gate == "auto" or self.stopping:
            return
        if all(h.name in self.results for batch in self.batches[index + 1:] for h in batch):
            return  # nothing left to start
        outcome: GateOutcome
        if gate == "manual":
            outcome = self.gates.manual(index, known)
        else:
            succeeded = [h for h in self.batches[index]
                         if self.results.get(h.name) == "succeeded"]
            outcome = self.gates.soak(index, succeeded, known)
        if outcome.stop_reason:
            self.stop_reason = outcome.stop_reason
        self.aborted = self.aborted or outcome.aborted
