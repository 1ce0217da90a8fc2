"""Measuring a page before it is read: how many events fit its byte and line budgets.

*Byte budgets.* A page ends before the event that would take it past ``max_bytes``
(``PATCHBAY_MAX_PAGE_BYTES``; the first event is always sent, however big), measured on
the stored JSON of each event in SQL, so the server never loads what it does not send.

*Line budgets.* A page asked for with ``max_lines`` carries the lines of each server's
output events only until that server has had ``max_lines`` lines; its later output events
come as *stubs*: ``data`` holds ``stream``, ``step`` and ``count`` (how many lines there
were) but no ``lines``. The seq stays contiguous, so a client keeps its exactly-once
bookkeeping and fetches the text of the lines it actually shows later, by seq. Stubs are
built from ``json_array_length`` in SQL, so the server never decodes lines it does not send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from models import JobEvent
from tasks.events.event_query import EventQuery

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


@dataclass
class Head:
    """What a page knows of an event before reading its data: its columns, the stored
    size of its data and, for output, its line count (and whether it goes as a stub)."""

    seq: int
    ts: float
    type: str
    host: str | None
    size: int
    count: int = 0
    stream: str | None = None
    step: str | None = None
    stub: bool = False


def measured_heads(session: Session, query: EventQuery, max_bytes: int | None,
                   lines: tuple[int, dict[str | None, int]] | None
                   ) -> tuple[list[Head], bool]:
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
    heads: list[Head] = []
    total = 0
    more = False
    pending = dict(lines[1]) if lines is not None else {}
    try:
        for row in result:
            if len(heads) == query.limit:
                more = True
                break
            head = Head(*row[:5])
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


def _cost(head: Head, max_lines: int | None, sent: dict[str | None, int]) -> int:
    """Bytes ``head`` adds to a page; with ``max_lines``, decides (and spends in
    ``sent``) whether it is sent whole or as a stub."""
    envelope = EVENT_ENVELOPE_BYTES + len(head.type) + len(head.host or "")
    if max_lines is None or head.type != "output":
        return envelope + int(head.size or 0)
    if sent.get(head.host, 0) + head.count > max_lines:
        sent[head.host] = max_lines  # later, shorter events must not slip in out of order
        head.stub = True
        return envelope + len(json.dumps(stub_data(head)))
    sent[head.host] = sent.get(head.host, 0) + head.count
    return envelope + int(head.size or 0)


def stub_data(head: Head) -> dict[str, Any]:
    return {"stream": head.stream, "step": head.step, "count": head.count}

