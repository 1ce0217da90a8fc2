"""Builds across the fleet: which server runs which build, and which ones drift.

A server's build is the ``version`` fact it last reported (a runbook step's
``capture: version``); ``previous_version`` is the one it reported before that, and
``target_version`` the build of the live job (running or paused) holding it now, from
``Job.target_version``.

Drift: a server drifts when it is not on the newest build among the servers that share
a tag with it (itself included); untagged servers compare with each other. A server
that never reported a version does not drift (nothing is known of it) and does not
count towards the newest build. Versions compare naturally, part by part, numbers as
numbers: ``1.10.0`` is newer than ``1.9.2``, ``1.4.2`` than ``1.4``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import LIVE_JOB_STATUSES, Job, Server, ServerLock

UNTAGGED = ""  # the group of servers without tags
_PARTS = re.compile(r"[0-9]+|[A-Za-z]+")


def version_key(version: str) -> tuple[tuple[tuple[int, int, str], ...], str]:
    """A sort key ordering versions naturally: numbers by value, words alphabetically
    (a word part sorts before a number part, so ``1.4.rc1`` < ``1.4.0``), a version
    before any longer one it starts (``1.4`` < ``1.4.2``)."""
    parts = tuple((1, int(part), "") if part.isdigit() else (0, 0, part.lower())
                  for part in _PARTS.findall(version))
    return parts, version  # same parts (1.4.2 vs 1.04.2): the text decides


def newest(versions: Iterable[str | None]) -> str | None:
    """The newest of the known versions (None when none is known)."""
    known = [v for v in versions if v]
    return max(known, key=version_key) if known else None


@dataclass(frozen=True)
class BuildRow:
    """What drift is computed from: a server's name, tags and reported version."""

    name: str
    tags: tuple[str, ...]
    version: str | None


@dataclass(frozen=True)
class Drift:
    newest_version: str | None  # the newest build among the servers sharing a tag
    drift: bool  # known version, and not that build


def drift(rows: Iterable[BuildRow]) -> dict[str, Drift]:
    """Each server's newest build among its tag peers, and whether it drifts from it."""
    rows = list(rows)
    newest_in: dict[str, str | None] = {}
    by_group: dict[str, list[str | None]] = {}
    for row in rows:
        for group in row.tags or (UNTAGGED,):
            by_group.setdefault(group, []).append(row.version)
    for group, versions in by_group.items():
        newest_in[group] = newest(versions)
    result = {}
    for row in rows:
        best = newest(newest_in[group] for group in row.tags or (UNTAGGED,))
        drifts = row.version is not None and best is not None and row.version != best
        result[row.name] = Drift(best, drifts)
    return result


def matrix(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Servers grouped by build, newest first (unknown last): ``[{"version",
    "count", "servers", "drifted"}]``, ``drifted`` counting the group's drifting
    servers. ``rows`` are annotated rows (:func:`annotate`)."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("version"), []).append(row)
    order = sorted((v for v in groups if v is not None), key=version_key, reverse=True)
    if None in groups:
        order.append(None)
    return [{"version": version, "count": len(groups[version]),
             "servers": sorted(row["name"] for row in groups[version]),
             "drifted": sum(1 for row in groups[version] if row.get("drift"))}
            for version in order]


def annotate(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (server summaries or fleet rows, by ``name``) with ``target_version``,
    ``drift`` and ``newest_version`` added; drift is computed over the whole fleet,
    whichever rows are given."""
    if not rows:
        return rows
    fleet = session.execute(select(Server.name, Server.tags, Server.facts)).all()
    drifts = drift(BuildRow(name, tuple(tags or ()), (facts or {}).get("version"))
                   for name, tags, facts in fleet)
    targets = dict(session.execute(
        select(Server.name, Job.target_version)
        .join(ServerLock, ServerLock.server_id == Server.id)
        .join(Job, Job.id == ServerLock.job_id)
        .where(Job.status.in_(LIVE_JOB_STATUSES))).all())
    for row in rows:
        found = drifts.get(row["name"], Drift(None, False))
        row.update(target_version=targets.get(row["name"]), drift=found.drift,
                   newest_version=found.newest_version)
    return rows


def server_rows(session: Session) -> list[dict[str, Any]]:
    """Every server's summary with its builds (``GET /api/servers``), by name."""
    servers = session.scalars(select(Server).order_by(Server.name))
    return annotate(session, [server.summary() for server in servers])
