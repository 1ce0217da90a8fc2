"""How the listing commands print: aligned columns, the API's JSON as it came, and the
short forms of a timestamp and of a job's parameters that fit in a column."""

from __future__ import annotations

import json
from typing import Any

import click


def table(headers: list[str], rows: list[list[Any]]) -> None:
    """Columns padded to their widest cell, two spaces apart (``None`` as empty)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def when(timestamp: str | None) -> str:
    """``2026-11-25T12:00:00.123456Z`` as ``2026-11-25 12:00:00`` (UTC)."""
    return timestamp[:19].replace("T", " ") if timestamp else ""


def job_params(job: dict[str, Any]) -> str:
    """``version=1.4.2 region=eu``, cut to 40 characters."""
    text = " ".join(f"{k}={v}" for k, v in (job.get("params") or {}).items())
    return text if len(text) <= 40 else text[:39] + "…"
