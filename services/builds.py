"""Builds across the fleet: which server runs which build, and which ones drift.

A server's build is the ``version`` fact it last reported (a runbook step's
``capture: version``); ``previous_version`` is the one it reported before that, and
``target_version`` the build of the live job (running or paused) holding it now, from
``Job.target_version``. The build a rollback would install (``rollback_version``) is
the last build that succeeded on the server below its current one, from its build
history (``server_builds``), which :func:`server_history` lists.

The agreed build of a server is the build most of the servers sharing a tag with it run
(itself included; untagged servers compare with each other), a tie going to the newer
build. A server is in a rollout while a live job (running or paused) with a target
build lists it, whether its turn has come or not (``rollout_job_id``,
``rollout_version``); one behind that target is pending, not drifting. Drift: a server
outside any rollout that reported a build other than its agreed build, ahead or behind
(after a canary that went no further, the canary is the one that drifts). A server that
never reported a version does not drift and does not count. Versions compare naturally,
part by part, numbers as numbers: ``1.10.0`` is newer than ``1.9.2``, ``1.4.2`` than
``1.4``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import LIVE_JOB_STATUSES, Job, JobHost, Server, ServerBuild, ServerLock
from tasks.errors import PatchbayError
from tasks.planning.build_history import HISTORY_SHOWN, rollback_targets

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
    drift: bool  # known version, outside any rollout, and not the agreed build
    agreed_version: str | None  # the build most of those servers run (tie: the newer)


def agreed(versions: Iterable[str | None]) -> str | None:
    """The build most of ``versions`` name, a tie going to the newer (None: none known)."""
    counts = Counter(v for v in versions if v)
    if not counts:
        return None
    return max(counts, key=lambda v: (counts[v], version_key(v)))


def drift(rows: Iterable[BuildRow], in_rollout: frozenset[str] | set[str] = frozenset()
          ) -> dict[str, Drift]:
    """Each server's agreed and newest build among its tag peers, and whether it
    drifts from the agreed one (never while it is in a rollout: ``in_rollout``)."""
    rows = list(rows)
    members: dict[str, set[str]] = {}
    version_of = {row.name: row.version for row in rows}
    for row in rows:
        for group in row.tags or (UNTAGGED,):
            members.setdefault(group, set()).add(row.name)
    peers_builds: dict[tuple[str, ...], tuple[str | None, str | None]] = {}
    result = {}
    for row in rows:
        key = tuple(sorted(set(row.tags or (UNTAGGED,))))
        if key not in peers_builds:  # a few tag sets among many servers: once each
            known = [version_of[name] for name in set().union(*(members[g] for g in key))]
            peers_builds[key] = (agreed(known), newest(known))
        agreed_version, newest_version = peers_builds[key]
        drifts = (row.name not in in_rollout and row.version is not None
                  and agreed_version is not None and row.version != agreed_version)
        result[row.name] = Drift(newest_version, drifts, agreed_version)
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
    ``rollout_job_id``, ``rollout_version``, ``drift``, ``agreed_version``,
    ``newest_version`` and the build a rollback would install (``rollback_version``,
    ``rollback_job_id``, ``rollback_reason``: :func:`rollback_fields`) added; drift is
    computed over the whole fleet, whichever rows are given."""
    if not rows:
        return rows
    fleet = session.execute(select(Server.name, Server.tags, Server.facts)).all()
    going_back = rollback_fields(session, {row["name"] for row in rows})
    rollouts = {name: (job_id, version) for name, job_id, version in session.execute(
        select(Server.name, Job.id, Job.target_version)
        .join(JobHost, JobHost.server_id == Server.id)
        .join(Job, Job.id == JobHost.job_id)
        .where(Job.status.in_(LIVE_JOB_STATUSES), Job.target_version.is_not(None)))}
    drifts = drift((BuildRow(name, tuple(tags or ()), (facts or {}).get("version"))
                    for name, tags, facts in fleet), frozenset(rollouts))
    targets = dict(session.execute(
        select(Server.name, Job.target_version)
        .join(ServerLock, ServerLock.server_id == Server.id)
        .join(Job, Job.id == ServerLock.job_id)
        .where(Job.status.in_(LIVE_JOB_STATUSES))).all())
    for row in rows:
        found = drifts.get(row["name"], Drift(None, False, None))
        job_id, version = rollouts.get(row["name"], (None, None))
        row.update(target_version=targets.get(row["name"]), drift=found.drift,
                   agreed_version=found.agreed_version,
                   newest_version=found.newest_version,
                   rollout_job_id=job_id, rollout_version=version,
                   **going_back.get(row["name"], NO_ROLLBACK))
    return rows


NO_ROLLBACK = {"rollback_version": None, "rollback_job_id": None, "rollback_reason": None}


def rollback_fields(session: Session, names: set[str]) -> dict[str, dict[str, Any]]:
    """Per server name, the build a rollback would put it back on now, the job it last
    succeeded in there and why that build (tasks/planning/build_history.py): the last
    good build below the current one, never one it was rolled back from."""
    servers = session.execute(select(Server.id, Server.name, Server.facts)
                              .where(Server.name.in_(names))).all()
    targets = rollback_targets(session, [(server_id, facts)
                                         for server_id, _, facts in servers])
    found = {}
    for server_id, name, _ in servers:
        target = targets[server_id]
        found[name] = NO_ROLLBACK if target is None else {
            "rollback_version": target.version, "rollback_job_id": target.job_id,
            "rollback_reason": target.reason}
    return found


def server_history(session: Session, name: str) -> dict[str, Any]:
    """``GET /api/servers/<name>/builds``: the server's build history, newest first (the
    newest ``HISTORY_SHOWN``), and the build a rollback would install now; ``not_found``
    for an unknown server."""
    server = session.scalar(select(Server).where(Server.name == name))
    if server is None:
        raise PatchbayError("not_found", f"unknown server '{name}'", "name")
    rows = session.execute(
        select(ServerBuild, Job.kind, Job.runbook).join(Job, Job.id == ServerBuild.job_id)
        .where(ServerBuild.server_id == server.id)
        .order_by(ServerBuild.id.desc()).limit(HISTORY_SHOWN + 1)).all()
    builds = [{"version": build.version,
               "reported_at": build.reported_at.isoformat() + "Z",
               "job_id": build.job_id, "runbook": runbook, "kind": kind,
               "status": build.status, "succeeded": build.status == "succeeded"}
              for build, kind, runbook in rows[:HISTORY_SHOWN]]
    return {"server": name, "version": (server.facts or {}).get("version"),
            "builds": builds, "more": len(rows) > HISTORY_SHOWN,
            **rollback_fields(session, {name}).get(name, NO_ROLLBACK)}


def server_rows(session: Session) -> list[dict[str, Any]]:
    """Every server's summary with its builds (``GET /api/servers``), by name."""
    servers = session.scalars(select(Server).order_by(Server.name))
    return annotate(session, [server.summary() for server in servers])
