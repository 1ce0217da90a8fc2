"""How the listing commands print: aligned columns (one of them wrapped to the terminal,
never cut), the API's JSON as it came, and the short forms of a timestamp, of a job's
parameters and of its strategy (in words, as the job page says it)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import click

Cell = Any  # a value shown as text; a list of words in the wrapped column


def terminal_width() -> int | None:
    """The width lines are wrapped to: ``COLUMNS`` if set, else the terminal's; None
    (no wrapping) when standard output is not a terminal and ``COLUMNS`` is unset."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def wrap_words(words: list[str], width: int | None) -> list[str]:
    """``words`` joined by spaces into lines of at most ``width`` characters, breaking
    only between words: a word longer than a line has a line of its own, whole."""
    lines: list[str] = []
    for word in words:
        if lines and (width is None or len(lines[-1]) + 1 + len(word) <= width):
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def table(headers: list[str], rows: list[list[Cell]], wrap: int | None = None) -> None:
    """Columns padded to their widest cell, two spaces apart (``None`` as empty).

    Column ``wrap`` holds lists of words: on a terminal (:func:`terminal_width`) they
    wrap onto more lines of the row to fit it, between words only."""
    texts = [[_text(c) for c in row] for row in [headers, *rows]]
    if wrap is not None:
        room = _room(texts, wrap, terminal_width())
        for row, given in zip(texts[1:], rows, strict=True):
            row[wrap] = wrap_words([str(w) for w in given[wrap] or []], room)
    widths = [max(len(line) for row in texts for line in _lines(row[i]))
              for i in range(len(headers))]
    for row in texts:
        cells = [_lines(c) for c in row]
        for depth in range(max(len(c) for c in cells)):
            parts = [(c[depth] if depth < len(c) else "").ljust(w)
                     for c, w in zip(cells, widths, strict=True)]
            click.echo("  ".join(parts).rstrip())


def _text(cell: Cell) -> Any:
    if cell is None:
        return ""
    return " ".join(map(str, cell)) if isinstance(cell, list) else str(cell)


def _lines(cell: str | list[str]) -> list[str]:
    return cell if isinstance(cell, list) else [cell]


def _room(texts: list[list[Any]], wrap: int, width: int | None) -> int | None:
    """The width left for column ``wrap`` once the others have theirs (None: all)."""
    if width is None:
        return None
    others = sum(max(len(row[i]) for row in texts) for i in range(len(texts[0]))
                 if i != wrap)
    return max(width - others - 2 * (len(texts[0]) - 1), len(texts[0][wrap]), 1)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def when(timestamp: str | None) -> str:
    """``2026-11-25T12:00:00.123456Z`` as ``2026-11-25 12:00:00`` (UTC)."""
    return timestamp[:19].replace("T", " ") if timestamp else ""


def param_words(job: dict[str, Any]) -> list[str]:
    """``["version=1.4.2", "region=eu"]``: each parameter whole, never cut; a
    rollback's without the empty ones (it takes none: its runbook's defaults fill in)."""
    rollback = job.get("kind") == "rollback"
    return [f"{k}={v}" for k, v in (job.get("params") or {}).items()
            if not (rollback and v in ("", None))]


def labelled(label: str, words: list[str], indent: str = "  ") -> list[str]:
    """``  params: a=1 b=2``, wrapped to the terminal under the first word."""
    lead = f"{indent}{label}: "
    width = terminal_width()
    lines = wrap_words(words, None if width is None else max(width - len(lead), 1))
    return [lead + lines[0], *(" " * len(lead) + line for line in lines[1:])]


def strategy_words(strategy: dict[str, Any] | None) -> str:
    """A job's strategy as the job page says it (templates/jobs/job.html,
    ``#job-strategy``): ``2 at once, batches 1, 100%, stop after 1 failure(s)``."""
    s = strategy or {}
    text = f"{s.get('parallel') or '?'} at once"
    if s.get("batches"):
        text += ", batches " + ", ".join(map(str, s["batches"]))
    if s.get("max_failures") is not None and s.get("max_failures") != "":
        text += f", stop after {s['max_failures']} failure(s)"
    if s.get("timeout"):
        text += f", step timeout {s['timeout']} s"
    gate = s.get("gate")
    if gate == "manual":
        text += ", a manual gate between batches (promote or abort)"
    elif isinstance(gate, dict) and gate.get("soak"):
        text += f", a {gate['soak']} s soak and health checks between batches"
    return text


def job_params(job: dict[str, Any]) -> str:
    """``version=1.4.2 region=eu``, whole (:func:`param_words` on one line)."""
    return " ".join(param_words(job))
