"""Times on the pages, in one convention: UTC, 24-hour, to the second, the zone said
("2026-12-07 21:04:05 UTC"). The ``utc_time`` filter renders a ``<time>`` whose
``datetime`` is the ISO moment; static/js/core/times.js (on every page) titles each
``time[data-utc]`` with the reader's local time, and renders the times scripts draw
in the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from markupsafe import Markup, escape


def as_utc(moment: datetime | str) -> datetime:
    """A naive UTC datetime from a datetime (naive means UTC, as the models keep them)
    or an ISO string ("2026-12-07T21:04:05.123Z", "+00:00" or no zone)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def utc_text(moment: datetime | str) -> str:
    """"2026-12-07 21:04:05 UTC"."""
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def utc_time(moment: datetime | str | None) -> Markup:
    """``<time datetime="…Z" data-utc>2026-12-07 21:04:05 UTC</time>``; nothing for
    no time (the template says what stands in its place)."""
    if moment is None or moment == "":
        return Markup("")
    instant = as_utc(moment)
    iso, text = escape(instant.isoformat() + "Z"), escape(utc_text(instant))
    return Markup(f'<time datetime="{iso}" data-utc>{text}</time>')  # noqa: S704 - escaped


def register(app: Flask) -> None:
    app.jinja_env.filters["utc_time"] = utc_time
    app.jinja_env.filters["utc_text"] = utc_text  # a relative time's title
