"""Reading a job's event log in bounded pieces: pages by seq range, server and type,
optionally without the output lines; the whole log page by page (downloads); and
search through the output.

Nothing here loads a whole log: every query has a LIMIT and walks the log by ``seq``
(keyset pagination on the primary key, or on ``ix_job_events_job_host_seq`` when one
server is asked for), so a job with a million lines costs the same memory as a small one.

:class:`Page` says whether more events follow (``more``); the client goes on after the
page's last seq (or, paging back, before its first). How much fits a page (its byte and
line budgets, and the stubs of output beyond them) is :mod:`tasks.events.page_measure`;
searching the output is :mod:`tasks.events.output_search`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import JobEvent
from tasks.events.event_query import EventQuery
from tasks.events.page_measure import Head, measured_heads, stub_data

SessionFactory = Callable[[], Session]
STUB_FETCH_CHUNK = 500  # seqs per IN (...) when fetching the events that keep their lines


@dataclass
class Page:
    """Events oldest first, and whether more match beyond them (after the last one, or,
    paging back, before the first): the page was cut by its limit or its byte budget."""

    events: list[dict[str, Any]]
    more: bool


def read_page(session: Session, query: EventQuery, max_lines: int | None = None,
              sent: dict[str | None, int] | None = None,
              max_bytes: int | None = None) -> Page:
    """One page of events, oldest first, of at most ``max_bytes`` (but at least one
    event). With ``max_lines``, output beyond each server's budget comes as stubs;
    ``sent`` (server -> lines sent so far) carries the budget across pages of one replay
    and is updated."""
    budgeted = max_lines is not None
    sent = {} if sent is None else sent
    heads, more = measured_heads(session, query, max_bytes,
                                 (max_lines, sent) if budgeted else None)
    if not heads:
        return Page([], more)
    if budgeted:
        return Page(_fill_budgeted(session, query, heads), more)
    lowest, highest = heads[0].seq, heads[-1].seq
    statement = query.filter(select(JobEvent)).where(
        JobEvent.seq >= lowest, JobEvent.seq <= highest).order_by(JobEvent.seq)
    return Page([row.to_dict() for row in session.scalars(statement)], more)


def _fill_budgeted(session: Session, query: EventQuery,
                   heads: list[Head]) -> list[dict[str, Any]]:
    full = [head.seq for head in heads if not head.stub]
    data: dict[int, dict[str, Any]] = {}
    for start in range(0, len(full), STUB_FETCH_CHUNK):
        chunk = full[start:start + STUB_FETCH_CHUNK]
        data.update(session.execute(select(JobEvent.seq, JobEvent.data).where(
            JobEvent.job_id == query.job_id, JobEvent.seq.in_(chunk))).all())
    return [{"seq": head.seq, "ts": head.ts, "type": head.type, "host": head.host,
             "data": stub_data(head) if head.stub else data.get(head.seq, {})}
            for head in heads]


def iter_events(sessions: SessionFactory, job_id: int, host: str | None = None,
                up_to: int | None = None, page: int = 500,
                max_bytes: int | None = None) -> Iterator[dict[str, Any]]:
    """Every event of a job (or of one server) up to seq ``up_to``, oldest first, read
    ``page`` events (and at most ``max_bytes``) at a time.

    Each page is read in its own short session, so a slow reader (a download over a slow
    link) never holds a database transaction open between pages."""
    after = 0
    while True:
        query = EventQuery(job_id, after_seq=after, host=host, limit=page, through_seq=up_to)
        with sessions() as session:
            found = read_page(session, query, max_bytes=max_bytes)
        yield from found.events
        if not found.more or not found.events:
            return
        after = found.events[-1]["seq"]
