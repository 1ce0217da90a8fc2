"""Coalescing of one server's output into ``output`` events.

A chatty command must cost a few events per second, not one per line: lines are
buffered per host and flushed as one event when the stream changes, when the buffer
holds ``max_lines``, or when the oldest buffered line is ``interval`` seconds old
(checked on every line and on the transport's ~100 ms tick).
"""

from __future__ import annotations

import time

from tasks.events import EventLog


class HostOutput:
    """Buffers the lines of one step on one host and appends them as events."""

    def __init__(self, events: EventLog, job_id: int, host: str, step: str,
                 interval: float, max_lines: int) -> None:
        self.events = events
        self.job_id = job_id
        self.host = host
        self.step = step
        self.interval = interval
        self.max_lines = max_lines
        self.stream: str | None = None
        self.lines: list[str] = []
        self.first_at = 0.0
        self.last_stdout_line: str | None = None

    def line(self, stream: str, text: str) -> None:
        if self.lines and stream != self.stream:
            self.flush()
        if not self.lines:
            self.stream = stream
            self.first_at = time.monotonic()
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
        self.events.append(self.job_id, "output", self.host,
                           {"stream": self.stream, "step": self.step, "lines": self.lines})
        self.lines = []
