"""Reading a job's event log in bounded pieces: pages by seq range, server and type,
optionally without the output lines; the whole log page by page (downloads); and
search through the output.

Nothing here loads a whole log: every query has a LIMIT and walks the log by ``seq``
(keyset pagination on the primary key, or on ``ix_job_events_job_host_seq`` when one
server is asked for), so a job with a million lines costs the same memory as a small one.

*Byte budgets.* A page also ends before the event that would take it past ``max_bytes``
(``PATCHBAY_MAX_PAGE_BYTES``; the first event is always sent, however big), measured on
the stored JSON of each event in SQL, so the server never loads what it does not send.
:class:`Page` says whether more events follow (``more``); the client goes on after the
page's last seq (or, paging back, before its first).

*Line budgets.* A page asked for with ``max_lines`` carries the lines of each server's
output events only until that server has had ``max_lines`` lines; its later output events
come as *stubs*: ``data`` holds ``stream``, ``step`` and ``count`` (how many lines there
were) but no ``lines``. The seq stays contiguous, so a client keeps its exactly-once
bookkeeping and fetches the text of the lines it actually shows later, by seq. Stubs are
built from ``json_array_length`` in SQL, so the server never decodes lines it does not send.

*Search* runs in the database, line by line (``json_each`` on SQLite,
``json_array_elements_text`` on PostgreSQL), over at most ``max_events`` output events
(``PATCHBAY_SEARCH_MAX_EVENTS``): a search that would need more is refused with
``search_too_broad`` rather than scanning a huge log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, func, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from models import JobEvent
from tasks.errors import PatchbayError

SessionFactory = Callable[[], Session]
STUB_FETCH_CHUNK = 500  # seqs per IN (...) when fetching the events that keep their lines
HEAD_CHUNK = 64  # rows fetched at a time while measuring a page, so a cut reads few more
# What an event adds around its data on the wire ({"seq": ..., "ts": ..., ...}), besides
# the length of its type and host.
EVENT_ENVELOPE_BYTES = 64


class stored_bytes(FunctionElement):  # noqa: N801 - used like a SQL function
    """Bytes of a JSON column's stored text, without sending it to Python."""

    type = Integer()
    inherit_cache = True


@compiles(stored_bytes)
def _stored_bytes(element: stored_bytes, compiler: Any, **kw: Any) -> str:
    return f"octet_length(CAST({compiler.process(element.clauses, **kw)} AS TEXT))"


@compiles(stored_bytes, "sqlite")
def _stored_bytes_sqlite(element: stored_bytes, compiler: Any, **kw: Any) -> str:
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


@dataclass(frozen=True)
class EventQuery:
    """Which events of one job: ``after_seq < seq < before_seq`` (and ``seq <=
    through_seq``), optionally one server and some types, at most ``limit``. With
    ``before_seq`` the page is the *newest* ``limit`` events below it (for paging back);
    otherwise the oldest after ``after_seq``. Pages are always returned oldest first."""

    job_id: int
    after_seq: int = 0
    before_seq: int | None = None
    limit: int = 1000
    host: str | None = None
    types: tuple[str, ...] | None = None
    through_seq: int | None = None

    @property
    def backwards(self) -> bool:
        return self.before_seq is not None

    def filter(self, statement: Select[Any]) -> Select[Any]:
        """The conditions, without order or limit."""
        statement = statement.where(JobEvent.job_id == self.job_id,
                                    JobEvent.seq > self.after_seq)
        if self.before_seq is not None:
            statement = statement.where(JobEvent.seq < self.before_seq)
        if self.through_seq is not None:
            statement = statement.where(JobEvent.seq <= self.through_seq)
        if self.host is not None:
            statement = statement.where(JobEvent.host == self.host)
        if self.types:
            statement = statement.where(JobEvent.type.in_(self.types))
        return statement

    def where(self, statement: Select[Any], extra: int = 0) -> Select[Any]:
        """The conditions, ordered for the page, limited to ``limit + extra`` rows."""
        return self.filter(statement).order_by(
            JobEvent.seq.desc() if self.backwards else JobEvent.seq).limit(self.limit + extra)


@dataclass
class Page:
    """Events oldest first, and whether more match beyond them (after the last one, or,
    paging back, before the first): the page was cut by its limit or its byte budget."""

    events: list[dict[str, Any]]
    more: bool


@dataclass
class _Head:
    seq: int
    ts: float
    type: str
    host: str | None
    size: int
    count: int = 0
    stream: str | None = None
    step: str | None = None
    stub: bool = False


def read_page(session: Session, query: EventQuery, max_lines: int | None = None,
              sent: dict[str | None, int] | None = None,
              max_bytes: int | None = None) -> Page:
    """One page of events, oldest first, of at most ``max_bytes`` (but at least one
    event). With ``max_lines``, output beyond each server's budget comes as stubs;
    ``sent`` (server -> lines sent so far) carries the budget across pages of one replay
    and is updated."""
    budgeted = max_lines is not None
    sent = {} if sent is None else sent
    heads, more = _measured_heads(session, query, max_bytes,
                                  (max_lines, sent) if budgeted else None)
    if not heads:
        return Page([], more)
    if budgeted:
        return Page(_fill_budgeted(session, query, heads), more)
    lowest, highest = heads[0].seq, heads[-1].seq
    statement = query.filter(select(JobEvent)).where(
        JobEvent.seq >= lowest, JobEvent.seq <= highest).order_by(JobEvent.seq)
    return Page([row.to_dict() for row in session.scalars(statement)], more)


def _measured_heads(session: Session, query: EventQuery, max_bytes: int | None,
                    lines: tuple[int, dict[str | None, int]] | None
                    ) -> tuple[list[_Head], bool]:
    """The heads of the page's events (oldest first), cut by the limit and the byte
    budget, and whether it was cut. Line budgets are spent here for forward pages; a
    backward page is measured at full size and budgeted afterwards, oldest first."""
    columns = [JobEvent.seq, JobEvent.ts, JobEvent.type, JobEvent.host,
               stored_bytes(JobEvent.data)]
    if lines is not None:
        columns += [func.json_array_length(JobEvent.data["lines"]),
                    JobEvent.data["stream"].as_string(), JobEvent.data["step"].as_string()]
    result = session.execute(query.where(select(*columns), extra=1)
                             .execution_options(yield_per=HEAD_CHUNK))
    heads: list[_Head] = []
    total = 0
    more = False
    pending = dict(lines[1]) if lines is not None else {}
    try:
        for row in result:
            if len(heads) == query.limit:
                more = True
                break
            head = _Head(*row[:5])
            if lines is not None:
                head.count, head.stream, head.step = int(row[5] or 0), row[6], row[7]
            spent = pending.get(head.host)
            cost = _cost(head, lines[0] if lines and not query.backwards else None, pending)
            if heads and max_bytes is not None and total + cost > max_bytes:
                if spent is None:  # this event is not sent: its lines are not spent
                    pending.pop(head.host, None)
                else:
                    pending[head.host] = spent
                more = True
                break
            total += cost
            heads.append(head)
    finally:
        result.close()
    if query.backwards:
        heads.reverse()
        if lines is not None:
            for head in heads:  # budgets are spent oldest first, whatever the direction
                _cost(head, lines[0], lines[1])
    elif lines is not None:
        lines[1].update(pending)
    return heads, more


def _cost(head: _Head, max_lines: int | None, sent: dict[str | None, int]) -> int:
    """Bytes ``head`` adds to a page; with ``max_lines``, decides (and spends in
    ``sent``) whether it is sent whole or as a stub."""
    envelope = EVENT_ENVELOPE_BYTES + len(head.type) + len(head.host or "")
    if max_lines is None or head.type != "output":
        return envelope + int(head.size or 0)
    if sent.get(head.host, 0) + head.count > max_lines:
        sent[head.host] = max_lines  # later, shorter events must not slip in out of order
        head.stub = True
        return envelope + len(json.dumps(_stub(head)))
    sent[head.host] = sent.get(head.host, 0) + head.count
    return envelope + int(head.size or 0)


def _stub(head: _Head) -> dict[str, Any]:
    return {"stream": head.stream, "step": head.step, "count": head.count}


def _fill_budgeted(session: Session, query: EventQuery,
                   heads: list[_Head]) -> list[dict[str, Any]]:
    full = [head.seq for head in heads if not head.stub]
    data: dict[int, dict[str, Any]] = {}
    for start in range(0, len(full), STUB_FETCH_CHUNK):
        chunk = full[start:start + STUB_FETCH_CHUNK]
        data.update(session.execute(select(JobEvent.seq, JobEvent.data).where(
            JobEvent.job_id == query.job_id, JobEvent.seq.in_(chunk))).all())
    return [{"seq": head.seq, "ts": head.ts, "type": head.type, "host": head.host,
             "data": _stub(head) if head.stub else data.get(head.seq, {})}
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
                  host: str | None = None, after_seq: int = 0,
                  before_seq: int | None = None, limit: int = 100,
                  max_events: int | None = None) -> tuple[list[Match], bool]:
    """Output lines containing ``text`` (case-insensitive, character by character),
    oldest first: at most ``limit`` matches, and whether there are more.

    The database matches the lines. It looks through at most ``max_events`` output events
    (after ``after_seq``, below ``before_seq``, of ``host``); when the search is not
    settled within them (fewer than ``limit`` matches found, and more output follows),
    it raises ``search_too_broad``."""
    scope = EventQuery(job_id, after_seq=after_seq, before_seq=before_seq, host=host,
                       types=("output",))
    with sessions() as session:
        bound = None
        if max_events is not None:
            # The seq of the last output event the budget reaches, and whether any follow.
            window = session.scalars(scope.filter(select(JobEvent.seq))
                                     .order_by(JobEvent.seq).offset(max_events - 1)
                                     .limit(2)).all()
            if window:
                bound = window[0]
            broad = len(window) > 1
        else:
            broad = False
        statement = _matching_lines(session, scope, text, bound, limit + 1)
        matches = [Match(seq, host_, stream or "stdout", step, int(index), line)
                   for seq, host_, stream, step, index, line in session.execute(statement)]
    if len(matches) > limit:
        return matches[:limit], True
    if broad:
        raise PatchbayError(
            "search_too_broad",
            f"this search would look through more than {max_events} output events "
            "(PATCHBAY_SEARCH_MAX_EVENTS): narrow it: give a host, or a seq range "
            "(after_seq, before_seq)", "q")
    return matches, False


def _matching_lines(session: Session, scope: EventQuery, text: str, bound: int | None,
                    limit: int) -> Select[Any]:
    """Output lines of ``scope`` (up to seq ``bound``) that contain ``text``, oldest
    first: (seq, host, stream, step, index in the event, line)."""
    if session.get_bind().dialect.name == "postgresql":
        lines = func.json_array_elements_text(JobEvent.data["lines"]).table_valued(
            "value", with_ordinality="ordinality").lateral("out_line")
        index = lines.c.ordinality - 1
        matches = lines.c.value.regexp_match(_case_blind_regex(text))
    else:
        lines = func.json_each(JobEvent.data, "$.lines").table_valued("key", "value") \
            .alias("out_line")
        index = lines.c.key
        matches = lines.c.value.op("GLOB")(_case_blind_glob(text))
    statement = scope.filter(select(
        JobEvent.seq, JobEvent.host, JobEvent.data["stream"].as_string(),
        JobEvent.data["step"].as_string(), index, lines.c.value)
        .select_from(JobEvent).join(lines, true())).where(matches)
    if bound is not None:
        statement = statement.where(JobEvent.seq <= bound)
    return statement.order_by(JobEvent.seq, index).limit(limit)


def _case_variants(char: str) -> list[str]:
    """``char`` and its one-character upper, lower and folded forms (ß stays ß)."""
    found = [char]
    for variant in (char.lower(), char.upper(), char.casefold()):
        if len(variant) == 1 and variant not in found:
            found.append(variant)
    return found


def _case_blind_glob(text: str) -> str:
    """A SQLite GLOB pattern matching lines that contain ``text`` in any case."""
    parts = []
    for char in text:
        variants = _case_variants(char)
        if len(variants) > 1 or char in "*?[":
            parts.append("[" + "".join(variants) + "]")
        else:
            parts.append(char)
    return "*" + "".join(parts) + "*"


def _case_blind_regex(text: str) -> str:
    """A PostgreSQL regular expression matching ``text`` in any case."""
    parts = []
    for char in text:
        variants = _case_variants(char)
        if len(variants) > 1:
            parts.append("[" + "".join(variants) + "]")
        elif char.isalnum():
            parts.append(char)
        else:
            parts.append("\\" + char if char.isascii() else char)
    return "".join(parts)
