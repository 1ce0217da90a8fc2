"""A job's whole output laid out to read, print or save (the page ``/jobs/<id>/output``):
the job's header, then each server with its outcome, its steps and every line of them.

Never a silently cut log. The output's stored size (the ``lines`` of its ``output``
events, measured in SQL without reading them) is compared with a limit
(``PATCHBAY_PRINT_MAX_BYTES``) first: within it every line is shown; beyond it none is,
and the page says how big the output is and offers the downloads instead. A running
job shows what was stored up to its ``last_seq`` when the page was asked for.

Memory stays bounded: each server's events are read a page at a time by
:func:`tasks.events.pages.iter_events` (each page in its own short session) while the
page is rendered, so at most one step's lines, within the limit, are held at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Job, JobEvent
from tasks.events.catalogue import CATALOGUE, OUTPUT
from tasks.events.event_query import EventQuery
from tasks.events.page_measure import stored_bytes
from tasks.events.pages import SessionFactory, iter_events, read_page

PRUNED = "events_pruned"  # services.retention's event: the job's log was removed
JOB_TYPES = tuple(name for name, kind in CATALOGUE.items() if kind.about == "job")
JOB_EVENTS_PAGE = 500


@dataclass(frozen=True)
class Line:
    """One output line; ``ts`` is when its batch of lines was stored."""

    text: str
    stream: str
    ts: float

    kind = "line"


@dataclass(frozen=True)
class Note:
    """What else happened, in the downloaded log's words ("step greet: ok, …")."""

    text: str
    ts: float
    type: str = ""  # the event's type

    kind = "note"


@dataclass
class Step:
    """One run of a step (``name`` None: what a server did outside its steps, such as
    connecting or finishing), with its lines and notes in the order they were stored."""

    name: str | None
    phase: str | None = None
    entries: list[Line | Note] = field(default_factory=list)


@dataclass
class ServerOutput:
    """One server of the job: its outcome (``JobHost.summary``) and, when the output is
    shown, its steps, read as they are iterated."""

    summary: dict[str, Any]
    steps: Iterator[Step]


@dataclass
class JobOutput:
    """What the page shows: the job (``Job.summary``), its job-level notes, its servers,
    the output's stored size against the limit, and the seq it was read up to."""

    job: dict[str, Any]
    size: int
    limit: int
    up_to: int
    notes: list[Note]
    servers: list[ServerOutput]

    @property
    def complete(self) -> bool:
        """Whether every line is shown (the output is within the limit)."""
        return self.size <= self.limit

    @property
    def running(self) -> bool:
        return self.job["status"] in ("running", "paused")

    @property
    def pruned(self) -> Note | None:
        """The note of its log's pruning (its output is gone), if it was pruned."""
        return next((note for note in self.notes if note.type == PRUNED), None)


def job_output(sessions: SessionFactory, session: Session, job: Job, limit: int,
               max_page_bytes: int) -> JobOutput:
    """``job``'s output up to its current ``last_seq``; its lines only if their stored
    size is within ``limit`` bytes. Events are read ``max_page_bytes`` at a time."""
    up_to = job.last_seq
    size = output_size(session, job.id, up_to)
    summary = job.summary()
    shown = size <= limit
    servers = [ServerOutput(host, _steps(sessions, job.id, host["name"], up_to,
                                         max_page_bytes) if shown else iter(()))
               for host in summary["hosts"]]
    return JobOutput(summary, size, limit, up_to, _job_notes(session, job.id, up_to),
                     servers)


def output_size(session: Session, job_id: int, up_to: int) -> int:
    """Bytes of the output lines stored for a job up to seq ``up_to``, as stored (the
    JSON text of each output event's ``lines``), summed in the database."""
    query = EventQuery(job_id, types=(OUTPUT,), through_seq=up_to)
    total = session.scalar(query.filter(
        select(func.coalesce(func.sum(stored_bytes(JobEvent.data["lines"])), 0))))
    return int(total or 0)


def size_words(count: int) -> str:
    """``3.2 MiB (3,355,443 bytes)``: a size as people read it, and exactly."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


def clock(ts: float) -> str:
    """An event's time as ``HH:MM:SS.mmm`` UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


def _job_notes(session: Session, job_id: int, up_to: int) -> list[Note]:
    """The job-level events (batches, gates, soaks, recovery, the end), in words."""
    notes: list[Note] = []
    after = 0
    while True:
        page = read_page(session, EventQuery(job_id, after_seq=after, types=JOB_TYPES,
                                             limit=JOB_EVENTS_PAGE, through_seq=up_to))
        notes.extend(Note(_words(event), event["ts"], event["type"])
                     for event in page.events)
        if not page.more or not page.events:
            return notes
        after = page.events[-1]["seq"]


def _steps(sessions: SessionFactory, job_id: int, host: str, up_to: int,
           max_page_bytes: int) -> Iterator[Step]:
    """One server's events grouped into steps, oldest first."""
    current = Step(None)
    for event in iter_events(sessions, job_id, host, up_to=up_to, max_bytes=max_page_bytes):
        kind, data = event["type"], event.get("data") or {}
        if kind == OUTPUT:
            current.entries.extend(Line(line, data.get("stream") or "stdout", event["ts"])
                                   for line in data.get("lines") or [])
            continue
        opens = kind == "step_started"
        if (opens or kind == "host_finished") and (current.name or current.entries):
            yield current
            current = Step(None)
        if opens:
            current = Step(data.get("step"), data.get("phase"))
        current.entries.append(Note(_words(event), event["ts"]))
        if kind == "step_finished":
            yield current
            current = Step(None)
    if current.name or current.entries:
        yield current


def _words(event: dict[str, Any]) -> str:
    entry = CATALOGUE.get(event["type"])
    if entry is None or entry.log is None:
        return event["type"]
    return entry.log(event.get("data") or {})
