"""Query strings of the history and event-log readers, parsed once for the pages and
the JSON API. Bad input raises ``PatchbayError("invalid", ..., field)``."""

from __future__ import annotations

from datetime import datetime, timedelta

from werkzeug.datastructures import MultiDict

from models import JOB_STATUSES
from services.history import JobFilter
from tasks.errors import PatchbayError
from tasks.events.event_query import EventQuery

JOB_KINDS = ("runbook", "adhoc", "rollback")
MAX_SEQ = 2**62


def int_arg(args: MultiDict[str, str], name: str, default: int, minimum: int,
            maximum: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise PatchbayError("invalid",
                            f"{name} must be a whole number from {minimum} to {maximum}", name)
    return int(raw)


def job_filter(args: MultiDict[str, str]) -> JobFilter:
    """``status``, ``runbook``, ``kind``, ``user``, ``since`` and ``until`` (dates or
    times in UTC; a bare ``until`` date includes that whole day)."""
    status = args.get("status", "").strip() or None
    if status is not None and status not in JOB_STATUSES:
        raise PatchbayError("invalid", f"status must be one of {', '.join(JOB_STATUSES)}",
                            "status")
    kind = args.get("kind", "").strip() or None
    if kind is not None and kind not in JOB_KINDS:
        raise PatchbayError("invalid", f"kind must be one of {', '.join(JOB_KINDS)}", "kind")
    return JobFilter(status=status, runbook=args.get("runbook", "").strip() or None,
                     kind=kind, user=args.get("user", "").strip() or None,
                     since=_moment(args, "since"), until=_moment(args, "until", end=True))


def _moment(args: MultiDict[str, str], name: str, end: bool = False) -> datetime | None:
    raw = args.get(name, "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.removesuffix("Z"))
    except ValueError:
        raise PatchbayError("invalid", f"{name} must be a date like 2026-11-25 or a time "
                            "like 2026-11-25T12:00 (UTC)", name) from None
    if moment.tzinfo is not None:
        raise PatchbayError("invalid", f"{name} is in UTC: leave out the offset", name)
    if end and len(raw) == 10:  # a date: up to the end of that day
        moment += timedelta(days=1)
    return moment


def event_query(job_id: int, args: MultiDict[str, str], max_page: int
                ) -> tuple[EventQuery, int | None]:
    """``after_seq``, ``before_seq``, ``limit``, ``host``, ``type`` (comma-separated) and
    ``max_lines`` (per-server line budget; later output events come as stubs)."""
    types = tuple(t for t in args.get("type", "").split(",") if t) or None
    before = args.get("before_seq")
    max_lines = args.get("max_lines")
    query = EventQuery(
        job_id,
        after_seq=int_arg(args, "after_seq", 0, 0, MAX_SEQ),
        before_seq=None if before in (None, "") else int_arg(args, "before_seq", 1, 1,
                                                                  MAX_SEQ),
        limit=int_arg(args, "limit", 1000, 1, max_page),
        host=args.get("host") or None,
        types=types)
    budget = None if max_lines in (None, "") else int_arg(args, "max_lines", 0, 0, 1_000_000)
    return query, budget
