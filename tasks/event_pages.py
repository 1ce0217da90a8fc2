"""Reading a job's event log in bounded pieces: pages by seq range, server and type,
optionally without the output lines; the whole log page by page (downloads); and
search through the output.

Nothing here loads a whole log: every query has a LIMIT and walks the log by ``seq``
(keyset pagination on the primary key, or on ``ix_job_events_job_host_seq`` when one
server is asked for), so a job with a million lines costs the same memory as a small one.

*Line budgets.* A page asked for with ``max_lines`` carries the lines of each server's
output events only until that server has had ``max_lines`` lines; its later output events
come as *stubs*: ``data`` holds ``stream``, ``step`` and ``count`` (how many lines there
were) but no ``lines``. The seq stays contiguous, so a client keeps its exactly-once
bookkeeping and fetches the text of the lines it actually shows later, by seq. Stubs are
built from ``json_array_length`` in SQL, so the server never decodes lines it does not send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, cast, func, select
from sqlalchemy.orm import Session

from models import JobEvent

SessionFactory = Callable[[], Session]
STUB_FETCH_CHUNK = 500  # seqs per IN (...) when fetching the events that keep their lines


@dataclass(frozen=True)
class EventQuery:
    """Which events of one job: ``after_seq < seq < before_seq``, optionally one server
    and some types, at most ``limit``. With ``before_seq`` the page is the *newest*
    ``limit`` events below it (for paging back); otherwise the oldest after ``after_seq``.
    Pages are always returned oldest first."""

    job_id: int
    after_seq: int = 0
    before_seq: int | None = None
    limit: int = 1000
    host: str | None = None
    types: tuple[str, ...] | None = None

    def where(self, statement: Select[Any]) -> Select[Any]:
        statement = statement.where(JobEvent.job_id == self.job_id,
                                    JobEvent.seq > self.after_seq)
        if self.before_seq is not None:
            statement = statement.where(JobEvent.seq < self.before_seq)
        if self.host is not None:
            statement = statement.where(JobEvent.host == self.host)
        if self.types:
            statement = statement.where(JobEvent.type.in_(self.types))
        newest_first = self.before_seq is not None
        return statement.order_by(JobEvent.seq.desc() if newest_first else JobEvent.seq) \
            .limit(self.limit)


def read_page(session: Session, query: EventQuery, max_lines: int | None = None,
              sent: dict[str | None, int] | None = None) -> list[dict[str, Any]]:
    """One page of events, oldest first. With ``max_lines``, output beyond each server's
    budget comes as stubs; ``sent`` (server -> lines sent so far) carries the budget across
    pages of one replay and is updated."""
    if max_lines is not None:
        return _budgeted_page(session, query, max_lines, {} if sent is None else sent)
    events = [row.to_dict() for row in session.scalars(query.where(select(JobEvent)))]
    if query.before_seq is not None:
        events.reverse()
    return events


def _budgeted_page(session: Session, query: EventQuery, max_lines: int,
                   sent: dict[str | None, int]) -> list[dict[str, Any]]:
    line_count = func.json_array_length(JobEvent.data["lines"])
    heads = session.execute(query.where(select(
        JobEvent.seq, JobEvent.ts, JobEvent.type, JobEvent.host, line_count,
        JobEvent.data["stream"].as_string(), JobEvent.data["step"].as_string()))).all()
    if query.before_seq is not None:
        heads.reverse()  # budgets are spent oldest first, whatever the page direction
    events: list[dict[str, Any]] = []
    full: list[int] = []
    for seq, ts, type_, host, count, stream, step in heads:
        event: dict[str, Any] = {"seq": seq, "ts": ts, "type": type_, "host": host}
        if type_ == "output":
            count = int(count or 0)
            if sent.get(host, 0) + count > max_lines:
                sent[host] = max_lines  # later, shorter events must not slip in out of order
                event["data"] = {"stream": stream, "step": step, "count": count}
            else:
                sent[host] = sent.get(host, 0) + count
                full.append(seq)
        else:
            full.append(seq)
        events.append(event)
    data: dict[int, dict[str, Any]] = {}
    for start in range(0, len(full), STUB_FETCH_CHUNK):
        chunk = full[start:start + STUB_FETCH_CHUNK]
        data.update(session.execute(select(JobEvent.seq, JobEvent.data).where(
            JobEvent.job_id == query.job_id, JobEvent.seq.in_(chunk))).all())
    for event in events:
        if "data" not in event:
            event["data"] = data.get(event["seq"], {})
    return events


def iter_events(sessions: SessionFactory, job_id: int, host: str | None = None,
                up_to: int | None = None, page: int = 500) -> Iterator[dict[str, Any]]:
    """Every event of a job (or of one server) up to seq ``up_to``, oldest first.

    Each page is read in its own short session, so a slow reader (a download over a slow
    link) never holds a database transaction open between pages."""
    after = 0
    while True:
        query = EventQuery(job_id, after_seq=after, host=host, limit=page)
        with sessions() as session:
            statement = query.where(select(JobEvent))
            if up_to is not None:
                statement = statement.where(JobEvent.seq <= up_to)
            events = [row.to_dict() for row in session.scalars(statement)]
        yield from events
        if len(events) < page:
            return
        after = events[-1]["seq"]


@dataclass(frozen=True)
class Match:
    seq: int
    host: str | None
    stream: str
    step: str | None
    index: int  # the line's position within its output event
    line: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "host": self.host, "stream": self.stream,
                "step": self.step, "index": self.index, "line": self.line}


def search_output(sessions: SessionFactory, job_id: int, text: str,
                  host: str | None = None, after_seq: int = 0, limit: int = 100,
                  page: int = 200) -> tuple[list[Match], bool]:
    """Output lines containing ``text`` (case-insensitive), oldest first: at most
    ``limit`` matches, and whether there are more.

    Where the text survives JSON encoding unchanged (printable ASCII without quotes or
    backslashes), SQL first skips the events that cannot match."""
    needle = text.casefold()
    prefilter = None
    if needle.isascii() and needle.isprintable() and not set(needle) & {'"', "\\"}:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        prefilter = func.lower(cast(JobEvent.data, Text)).like(f"%{escaped}%", escape="\\")
    matches: list[Match] = []
    after = after_seq
    while True:
        query = EventQuery(job_id, after_seq=after, host=host, types=("output",), limit=page)
        with sessions() as session:
            statement = query.where(select(JobEvent))
            if prefilter is not None:
                statement = statement.where(prefilter)
            rows = [row.to_dict() for row in session.scalars(statement)]
        for event in rows:
            data = event["data"]
            for index, line in enumerate(data.get("lines") or []):
                if needle in line.casefold():
                    matches.append(Match(event["seq"], event["host"],
                                         data.get("stream", "stdout"), data.get("step"),
                                         index, line))
            if len(matches) > limit:
                return matches[:limit], True
        if len(rows) < page:
            return matches, False
        after = rows[-1]["seq"]
