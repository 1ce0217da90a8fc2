"""Which servers a job request names, and whether a running job holds any of them.

The server lock itself is a row (``server_locks``, one per server): these are the
questions asked before a job is recorded, and again when recording it lost a race.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Job, Server, ServerLock
from tasks.errors import PatchbayError


def select_servers(session: Session, names: list[str] | None,
                   tags: list[str] | None) -> list[Server]:
    """The servers a request names, or those with any of its tags, in a stable order."""
    if names and tags:
        raise PatchbayError("invalid", "give either servers or tags, not both", "servers")
    if names:
        if len(set(names)) != len(names):
            raise PatchbayError("invalid", "a server is listed twice", "servers")
        found = {s.name: s for s in session.scalars(
            select(Server).where(Server.name.in_(names)))}
        missing = [name for name in names if name not in found]
        if missing:
            raise PatchbayError("unknown_server", f"unknown server {missing[0]!r}",
                                "servers")
        return [found[name] for name in names]
    if tags:
        wanted = set(tags)
        chosen = [s for s in session.scalars(select(Server).order_by(Server.name))
                  if wanted & set(s.tags or [])]
        if not chosen:
            raise PatchbayError("unknown_server",
                                f"no server has any of the tags {', '.join(sorted(wanted))}",
                                "tags")
        return chosen
    raise PatchbayError("invalid", "choose at least one server (servers or tags)",
                        "servers")


NAMES_IN_MESSAGE = 5  # servers named per job in a busy message; the rest counted


def refuse_busy(session: Session, server_ids: list[int]) -> None:
    """Raise ``server_busy`` if any of the servers is held by a running job: the message
    says how many and by which jobs, ``held`` lists them (``{"job_id", "status",
    "servers"}`` per job)."""
    held: dict[int, dict[str, Any]] = {}
    for name, job_id, status in session.execute(
            select(Server.name, ServerLock.job_id, Job.status)
            .join(ServerLock, ServerLock.server_id == Server.id)
            .join(Job, Job.id == ServerLock.job_id)
            .where(ServerLock.server_id.in_(server_ids))
            .order_by(ServerLock.job_id, Server.name)):
        held.setdefault(job_id, {"job_id": job_id, "status": status, "servers": []})
        held[job_id]["servers"].append(name)
    if not held:
        return
    jobs = list(held.values())
    raise PatchbayError("server_busy", busy_message(jobs, len(set(server_ids))),
                        "servers", extra={"held": jobs})


def busy_message(jobs: list[dict[str, Any]], chosen: int) -> str:
    """"server gs-03 is held by running job #7", or for more: "8 of the 8 servers
    chosen are busy: gs-01, …, gs-05 and 3 more in running job #7; …"."""
    count = sum(len(job["servers"]) for job in jobs)
    if count == 1:
        job = jobs[0]
        return (f"server {job['servers'][0]} is held by {job['status']} job "
                f"#{job['job_id']}")
    parts = []
    for job in jobs:
        names = job["servers"]
        shown = ", ".join(names[:NAMES_IN_MESSAGE])
        if len(names) > NAMES_IN_MESSAGE:
            shown += f" and {len(names) - NAMES_IN_MESSAGE} more"
        parts.append(f"{shown} in {job['status']} job #{job['job_id']}")
    return (f"{count} of the {chosen} servers chosen are busy: {'; '.join(parts)}. "
            "Wait for those jobs to end, or choose other servers")
