"""The light ``job:progress`` message a user's every tab gets for that user's jobs.

Pages that show a job's progress rather than its log (the dashboard's and the history's
job rows) must not pay for its output: a chatty job prints a million lines, and each
such tab would receive them all. So the full ``job:events`` go only to ``job:<id>``
(the job page, clients that subscribed), and ``user:<id>`` gets, per published batch,
the batch's events minus its output (and minus the probes' output of wait steps), plus
at most one ``latest`` output line per job per :data:`LATEST_INTERVAL` seconds: enough
to show that it is talking, never a stream.

A line held back by the interval rides on the job's next message (a status event, or the
next output batch after the interval); if none comes, the caller is told to :meth:`flush`
once the interval is over, so a row's last line is never more than the interval behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LATEST_INTERVAL = 1.0  # seconds between two latest-line-only messages of one job
LATEST_CHARS = 200  # a latest line is cut to this many characters
# Per event, what progress drops from its data: output is the log itself; a probe's
# output is the probe's log (its attempt, exit code and match stay).
DROPPED = {"output": None, "wait_probe": ("output",)}


@dataclass
class _JobState:
    sent_latest_at: float = float("-inf")
    pending: dict[str, Any] | None = None
    flush_due: bool = False  # a flush has been asked of the caller and not yet made


@dataclass
class Progress:
    """What to send now (or None), and in how many seconds to call :meth:`flush` (or None)."""

    message: dict[str, Any] | None
    flush_in: float | None = None


class ProgressDigest:
    """Turns each published batch of one job's events into its ``job:progress`` message
    (or None when the batch holds nothing a progress view needs yet). Thread-safe: the
    event writer calls it; state per job is dropped at ``job_finished``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 interval: float = LATEST_INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._jobs: dict[int, _JobState] = {}
        self._lock = threading.Lock()

    def digest(self, job_id: int, events: list[dict[str, Any]]) -> Progress:
        kept = [light for light in map(_light, events) if light is not None]
        latest = _latest_line(events)
        with self._lock:
            state = self._jobs.setdefault(job_id, _JobState())
            if latest is not None:
                state.pending = latest
            if any(event["type"] == "job_finished" for event in events):
                del self._jobs[job_id]
                state.pending = None  # the row shows the outcome now, not a last line
            now = self._clock()
            wait = self._interval - (now - state.sent_latest_at)
            if not kept and (state.pending is None or wait > 0):
                if state.pending is None or state.flush_due:
                    return Progress(None)
                state.flush_due = True
                return Progress(None, flush_in=wait)
            message: dict[str, Any] = {"job_id": job_id, "events": kept, "latest": None}
            if state.pending is not None:
                message["latest"] = state.pending
                state.pending, state.sent_latest_at = None, now
            return Progress(message)

    def flush(self, job_id: int) -> Progress:
        """The held-back latest line of a job, once its interval is over; asked again
        (``flush_in``) when a line sent meanwhile started a new interval."""
        with self._lock:
            state = self._jobs.get(job_id)
            if state is None:
                return Progress(None)
            state.flush_due = False
        return self.digest(job_id, [])

    def tracked(self) -> int:
        """Jobs with state kept (tests: finished jobs leave none behind)."""
        with self._lock:
            return len(self._jobs)


def _light(event: dict[str, Any]) -> dict[str, Any] | None:
    """The event as progress carries it: None for output, a probe without its output."""
    kind = event["type"]
    if kind not in DROPPED:
        return event
    dropped = DROPPED[kind]
    if dropped is None:
        return None
    return {**event, "data": {k: v for k, v in event["data"].items() if k not in dropped}}


def _latest_line(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The batch's last output line that has text: ``{"seq", "host", "stream", "line"}``."""
    for event in reversed(events):
        if event["type"] != "output":
            continue
        lines = event["data"].get("lines") or []
        if lines:
            return {"seq": event["seq"], "host": event["host"],
                    "stream": event["data"].get("stream"),
                    "line": str(lines[-1])[:LATEST_CHARS]}
    return None
