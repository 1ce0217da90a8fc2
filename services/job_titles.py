"""What a job is called and what it moved, in one place for the job page, the history
rows, the API (and so the CLI) and webhooks.

A job of kind ``rollback`` runs a runbook's ``rollback:`` section: it is titled "Roll back
(game-update)", never as the runbook's update, and says per server the build it goes from
and to (``JobHost.from_version`` → ``to_version``: "1.4.8 → 1.4.7"). It takes no
parameters: it runs with the runbook's defaults, so a parameter without one (the update's
``version``) is empty there and not shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ROLLBACK = "rollback"
ADHOC = "adhoc"
NAMES_SHOWN = 10  # server names per build move in words; the rest are counted


def job_title(kind: str, runbook: str) -> str:
    """"game-update", "ad-hoc command" or "Roll back (game-update)"."""
    if kind == ADHOC:
        return "ad-hoc command"
    if kind == ROLLBACK:
        return f"Roll back ({runbook})"
    return runbook


def shown_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters a page lists: a rollback's without the empty ones (it takes none;
    its runbook's defaults fill in, empty where there is no default)."""
    params = dict(params or {})
    if kind == ROLLBACK:
        return {name: value for name, value in params.items() if value not in ("", None)}
    return params


def build_moves(hosts: Iterable[tuple[str, str | None, str | None]]
                ) -> list[dict[str, Any]]:
    """``(server, from, to)`` grouped by move, in the servers' order:
    ``[{"from": "1.4.8", "to": "1.4.7", "servers": ["gs-01", ...]}]``."""
    moves: dict[tuple[str | None, str | None], list[str]] = {}
    for name, before, after in hosts:
        moves.setdefault((before, after), []).append(name)
    return [{"from": before, "to": after, "servers": names}
            for (before, after), names in moves.items()]


def moves_words(moves: list[dict[str, Any]]) -> str:
    """"1.4.8 → 1.4.7" when every server makes the same move, else each move with its
    servers: "1.4.8 → 1.4.7 (gs-01, gs-02); 1.4.9 → 1.4.8 (gs-03)"."""
    def move(entry: dict[str, Any]) -> str:
        return f"{entry['from'] or 'unknown'} → {entry['to'] or 'unknown'}"

    if len(moves) == 1:
        return move(moves[0])
    parts = []
    for entry in moves:
        names = entry["servers"]
        shown = ", ".join(names[:NAMES_SHOWN])
        if len(names) > NAMES_SHOWN:
            shown += f" and {len(names) - NAMES_SHOWN} more"
        parts.append(f"{move(entry)} ({shown})")
    return "; ".join(parts)


def titled(summary: dict[str, Any]) -> dict[str, Any]:
    """A job's summary (``Job.summary``, with its hosts) with ``title`` and, for a
    rollback, ``builds`` (:func:`build_moves`) and ``builds_words`` (:func:`moves_words`)
    added (empty for other kinds)."""
    builds = build_moves((host["name"], host.get("from_version"), host.get("to_version"))
                         for host in summary.get("hosts", [])) \
        if summary["kind"] == ROLLBACK else []
    return {**summary, "title": job_title(summary["kind"], summary["runbook"]),
            "builds": builds, "builds_words": moves_words(builds) if builds else ""}
