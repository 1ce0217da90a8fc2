"""Plain lines, for logs and CI (and ``--plain``): one per output line or event,
flushed at once, each starting with the server's name (padded to the longest):
``gs-01 | text`` (stdout), ``gs-01 ! text`` (stderr), ``gs-01 * what happened`` (steps,
results); ``job #12 * ...`` for the job itself, and a last ``job #12 <status> ...``
summary line.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from patchbay_cli.story import JobStory, header

STREAM_MARK = {"stdout": "|", "stderr": "!"}


def name_width(job: dict[str, Any]) -> int:
    """Server names are padded to the longest (``job #12`` included)."""
    return max([len(h["name"]) for h in job.get("hosts") or []] + [len(f"job #{job['id']}")])


class PlainRenderer:
    """One line per output line or event, flushed at once (a CI log shows it live)."""

    def __init__(self, job_id: int, stream: TextIO | None = None,
                 host: str | None = None) -> None:
        self.stream = stream or sys.stdout
        self.story = JobStory(job_id)
        self.host = host
        self.width = 0

    def begin(self, job: dict[str, Any], link: str) -> None:
        self.width = name_width(job)
        self.stream.write(f"{header(job)}: {link}\n")
        self.stream.flush()

    def show(self, events: list[dict[str, Any]]) -> None:
        lines: list[str] = []
        for event in events:
            host = event.get("host")
            if self.host is not None and host is not None and host != self.host:
                continue
            if event.get("type") == "output":
                data = event.get("data") or {}
                mark = STREAM_MARK.get(data.get("stream"), "|")
                lines.extend(f"{host:<{self.width}} {mark} {line}"
                             for line in data.get("lines") or [])
                continue
            text = self.story.describe(event)
            if text is None:
                continue
            if event.get("type") == "job_finished":
                lines.append(text)
            else:
                who = host if host is not None else f"job #{self.story.job_id}"
                lines.append(f"{who:<{self.width}} * {text}")
        if lines:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
