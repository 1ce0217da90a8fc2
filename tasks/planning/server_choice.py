"""Which servers a job request names, and whether a running job holds any of them.

The server lock itself is a row (``server_locks``, one per server): these are the
questions asked before a job is recorded, and again when recording it lost a race.
"""

from __future__ import annotations

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


def refuse_busy(session: Session, server_ids: list[int]) -> None:
    """Raise ``server_busy`` if any of the servers is held by a running job."""
    held = session.execute(
        select(Server.name, ServerLock.job_id, Job.status)
        .join(ServerLock, ServerLock.server_id == Server.id)
        .join(Job, Job.id == ServerLock.job_id)
        .where(ServerLock.server_id.in_(server_ids)).order_by(Server.name)).first()
    if held is not None:
        raise PatchbayError("server_busy",
                            f"server {held.name} is held by {held.status} job "
                            f"#{held.job_id}", "servers")
