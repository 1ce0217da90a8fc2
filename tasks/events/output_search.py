"""Searching a job's output in the database, line by line.

``json_each`` on SQLite, ``json_array_elements_text`` on PostgreSQL, over at most
``max_events`` output events (``PATCHBAY_SEARCH_MAX_EVENTS``): a search that would need
more is refused with ``search_too_broad`` rather than scanning a huge log. Matching is
case-blind character by character (a GLOB or a regular expression of each character's
case variants), so it means the same on both databases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select, true
from sqlalchemy.orm import Session

from models import JobEvent
from tasks.errors import PatchbayError
from tasks.events.event_query import EventQuery
from tasks.events.pages import SessionFactory


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
