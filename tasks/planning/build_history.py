"""A server's build history, and the build a rollback puts it back on.

Every job that ends on a server having reported its build there (a runbook step's
``capture: version``) leaves a :class:`models.ServerBuild` row: the build, the job, the
job's outcome on that server and when (written by :mod:`tasks.events.job_state`).

The build a rollback goes back to is read from that history as from a stack: a job that
installs a build puts it on top (the same build again stays one entry); a rollback job
that lands on a build takes off everything above that build's last entry (the builds it
rolled back from are rejected, so a second rollback never goes forward to them). The
rollback target is then the newest entry below the current build whose job succeeded
there: "1.4.7, the last build that succeeded here before 1.4.8 (job #3)". A server with
no history (builds reported before the history was kept) goes back to its
``previous_version`` fact, the build it reported before its current one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Job, ServerBuild

ROLLBACK_KIND = "rollback"  # tasks.planning.rollback.KIND (which imports this module)
HISTORY_SHOWN = 20  # the newest entries a server's history shows


@dataclass(frozen=True)
class BuildEntry:
    """One row of a server's build history, oldest first."""

    version: str
    job_id: int | None
    status: str  # the job's outcome on the server: succeeded, failed, ...
    rollback: bool = False  # reported by a rollback job

    @property
    def good(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class RollbackTarget:
    """Where a rollback takes a server, and why that build."""

    version: str
    job_id: int | None  # the job the build last succeeded in (None: from the fact)
    reason: str


def stack(entries: Iterable[BuildEntry]) -> list[BuildEntry]:
    """The builds a server went through and did not roll back from, oldest first; each
    entry is the last job of its build (the last that succeeded, if one did)."""
    kept: list[BuildEntry] = []
    for entry in entries:
        if entry.rollback and any(e.version == entry.version for e in kept):
            while kept[-1].version != entry.version:
                kept.pop()
        if kept and kept[-1].version == entry.version:
            if entry.good or not kept[-1].good:
                kept[-1] = entry
            continue
        kept.append(entry)
    return kept


def rollback_target(entries: Iterable[BuildEntry], current: str | None,
                    previous_fact: str | None = None) -> RollbackTarget | None:
    """The build before ``current`` a rollback installs (None: there is none)."""
    entries = list(entries)
    if not entries:
        if previous_fact and previous_fact != current:
            return RollbackTarget(previous_fact, None, f"{previous_fact}, the build it "
                                  f"reported before {current or 'its current one'}")
        return None
    kept = stack(entries)
    below = next((i for i in range(len(kept) - 1, -1, -1)
                  if kept[i].version == current), len(kept))
    for entry in reversed(kept[:below]):
        if entry.good and entry.version != current:
            return RollbackTarget(entry.version, entry.job_id,
                                  f"{entry.version}, the last build that succeeded here "
                                  f"before {current or 'its current one'} "
                                  f"(job #{entry.job_id})")
    return None


def histories(session: Session, server_ids: Iterable[int]) -> dict[int, list[BuildEntry]]:
    """Each server's build history, oldest first (servers without one: absent)."""
    ids = list(server_ids)
    found: dict[int, list[BuildEntry]] = {}
    if not ids:
        return found
    for server_id, version, job_id, status, kind in session.execute(
            select(ServerBuild.server_id, ServerBuild.version, ServerBuild.job_id,
                   ServerBuild.status, Job.kind)
            .join(Job, Job.id == ServerBuild.job_id)
            .where(ServerBuild.server_id.in_(ids)).order_by(ServerBuild.id)):
        found.setdefault(server_id, []).append(
            BuildEntry(version, job_id, status, kind == ROLLBACK_KIND))
    return found


def rollback_targets(session: Session, servers: Iterable[tuple[int, dict]]
                     ) -> dict[int, RollbackTarget | None]:
    """Per server (``(id, facts)``), the build a rollback would install now."""
    servers = list(servers)
    history = histories(session, [server_id for server_id, _ in servers])
    return {server_id: rollback_target(history.get(server_id, []),
                                       (facts or {}).get("version"),
                                       (facts or {}).get("previous_version"))
            for server_id, facts in servers}
