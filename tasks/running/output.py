"""Coalescing of one server's output into ``output`` events.

A chatty command must cost a few events per second, not one per line: lines are
buffered per host and flushed as one event when the stream changes, when the buffer
holds ``max_lines``, or when the oldest buffered line is ``interval`` seconds old
(checked on every line and on the transport's ~100 ms tick).

Each ``output`` event also carries ``offset``: the byte offset in its stream just after
its last line. The last such offset of a step's stream is where a reader that lost the
step (an SSH drop, a console restart) goes on, so no line is lost and none comes twice.

Before a line is buffered, every secret value of its server's job (``mask``: the
job's secret parameters and the server's secret variables, each of at least
:data:`~tasks.planning.secrets.MIN_MASKED_LENGTH` characters) is replaced by ``••••``, so a
command that echoes a secret stores, shows and captures it masked. A line too long to
keep whole is cut before a secret, never inside it
(:class:`~tasks.transport.step_output.LineSplitter`).
A secret split across two lines, or transformed by the command (base64, hex), is not
recognised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tasks.events.writer import EventLog


class HostOutput:
    """Buffers the lines of one step on one host and appends them as events."""

    def __init__(self, events: EventLog, job_id: int, host: str, step: str,
                 interval: float, max_lines: int, offsets: dict[str, int] | None = None,
                 mask: Callable[[str], str] | None = None) -> None:
        self.events = events
        self.mask = mask
        self.job_id = job_id
        self.host = host
        self.step = step
        self.interval = interval
        self.max_lines = max_lines
        self.stream: str | None = None
        self.lines: list[str] = []
        self.first_at = 0.0
        self.last_stdout_line: str | None = None
        # Per stream: end of the last line received (``offsets``) and stored (``stored``).
        self.offsets: dict[str, int] = dict(offsets or {})
        self.stored: dict[str, int] = dict(self.offsets)
        # The job's stored-output budget (PATCHBAY_MAX_JOB_OUTPUT), shared by its servers.
        self.budget: OutputBudget | None = None

    @property
    def total_bytes(self) -> int:
        return sum(self.offsets.values())

    def line(self, stream: str, text: str, offset: int | None = None) -> None:
        if self.lines and stream != self.stream:
            self.flush()
        if not self.lines:
            self.stream = stream
            self.first_at = time.monotonic()
        if offset is not None:
            self.offsets[stream] = offset
        if self.mask:
            text = self.mask(text)
        self.lines.append(text)
        if stream == "stdout" and text.strip():
            self.last_stdout_line = text.strip()
        if len(self.lines) >= self.max_lines:
            self.flush()
        else:
            self.tick()

    def tick(self) -> float | None:
        """Flush once the oldest buffered line is ``interval`` old; returns the seconds
        until the buffer is due (None when nothing is buffered), so the caller can wake
        exactly then instead of up to a whole transport tick late."""
        if not self.lines:
            return None
        due = self.first_at + self.interval - time.monotonic()
        if due <= 0:
            self.flush()
            return None
        return due

    def flush(self) -> None:
        if not self.lines:
            return
        if self.budget is not None and not self._within_budget():
            self.lines = []
            return
        data = {"stream": self.stream, "step": self.step, "lines": self.lines}
        if self.stream in self.offsets:
            data["offset"] = self.offsets[self.stream]
            self.stored[self.stream] = self.offsets[self.stream]
        self.events.append(self.job_id, "output", self.host, data)
        self.lines = []

    def _within_budget(self) -> bool:
        """Whether the buffered lines may be stored; past the job's budget they are
        not, and the first lines this server loses leave the cut marker instead."""
        assert self.budget is not None
        store, mark = self.budget.admit(self.host, self.lines)
        if mark:
            self.events.append(self.job_id, "output", self.host, {
                "stream": "stderr", "step": self.step, "lines": [self.budget.marker()],
                "cut": True})
        return store


def line_bytes(lines: list[str]) -> int:
    """What lines take in a job's output budget: their UTF-8 bytes and a newline each."""
    return sum(len(line.encode()) + 1 for line in lines)


class OutputBudget:
    """The bytes of output lines a job may store, across its servers and streams.

    Once an event's lines would take the job past ``limit``, nothing more of the job's
    output is stored; each server that loses lines gets one marker line (an ``output``
    event on stderr with ``cut: true``) saying so. A resumed job starts from what its
    log holds (``used``, and the servers already ``marked``)."""

    def __init__(self, limit: int, used: int = 0,
                 marked: frozenset[str] = frozenset()) -> None:
        self.limit = limit
        self.used = used
        self.marked = set(marked)
        self.cut = bool(self.marked)
        self._lock = threading.Lock()

    def admit(self, host: str, lines: list[str]) -> tuple[bool, bool]:
        """(store these lines?, write the cut marker for ``host`` now?)."""
        size = line_bytes(lines)
        with self._lock:
            if not self.cut and self.used + size <= self.limit:
                self.used += size
                return True, False
            self.cut = True
            if host in self.marked:
                return False, False
            self.marked.add(host)
            return False, True

    def marker(self) -> str:
        return (f"[output cut: the job's stored output reached {_size(self.limit)} "
                "(PATCHBAY_MAX_JOB_OUTPUT); later lines are not kept]")


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
