"""Rollback jobs: put servers back on the last good build before their current one.

A rollback is a job of kind ``rollback`` whose runbook is built in memory from a real
runbook's ``rollback:`` section (as :class:`tasks.planning.adhoc.CommandRunbook` builds an
ad-hoc job), so locks, cancel, the event log, history, audit and re-runs treat it like
any other job. Its steps are rendered per server with ``{{ previous_version }}`` being
the build that server goes back to: the last build that succeeded there before its
current one, never one it was rolled back from (its build history,
:mod:`tasks.planning.build_history`); a server without one is refused before anything
starts. It takes no parameters: the runbook's defaults are used.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Job, Server
from tasks.errors import PatchbayError
from tasks.planning.build_history import RollbackTarget, rollback_targets
from tasks.planning.rendered_steps import HostContext, RenderedStep
from tasks.planning.runbook_names import unknown_runbook
from tasks.planning.runbook_schema import RunbookSpec
from tasks.planning.runbooks import Runbook

KIND = "rollback"


class RollbackRunbook(Runbook):
    """The ``rollback:`` steps of ``book`` as the main steps of a job (no on_failure)."""

    kind = KIND

    def __init__(self, book: Runbook) -> None:
        if not book.spec.rollback:
            raise PatchbayError("invalid", f"runbook {book.name} has no rollback section, "
                                "so it cannot roll a server back", "runbook")
        super().__init__(RunbookSpec(
            name=book.name, description=f"roll back with {book.name}",
            params=book.spec.params, steps=list(book.spec.rollback),
            strategy=book.spec.strategy), book.source)
        self.book = book

    def defaults(self) -> dict[str, str]:
        """The parameters a rollback runs with: each one's default ("" without one; the
        runbook loader refuses rollback steps using a parameter that has none)."""
        return {name: "" if spec.default is None else str(spec.default)
                for name, spec in self.spec.params.items()}

    def validate_params(self, raw: Any) -> dict[str, str]:
        """The runbook's defaults (as they are now, also for a re-run): a rollback takes
        no parameters."""
        if raw is None or raw == {}:
            return self.defaults()
        raise PatchbayError("invalid", "a rollback takes no parameters (it runs with the "
                            "runbook's defaults)", "params")

    def render(self, params: dict[str, str], host: HostContext,
               shown: dict[str, str] | None = None) -> list[RenderedStep]:
        if not host.previous_version:
            raise PatchbayError("invalid", f"server {host.name} has no previous build to "
                                "roll back to (a rollback needs a build that succeeded "
                                "there before its current one)", "servers")
        return self.book.render_rollback(params, host, shown)

    def render_on_failure(self, params: dict[str, str], host: HostContext,
                          shown: dict[str, str] | None = None) -> list[RenderedStep]:
        return []

    @staticmethod
    def target_version(contexts: list[HostContext]) -> str | None:
        """The build a rollback installs, when all its servers go back to the same one
        (``Job.target_version`` is one value per job)."""
        builds = {context.previous_version for context in contexts}
        return builds.pop() if len(builds) == 1 else None


def choose_runbook(books: dict[str, Runbook], requested: str | None,
                   reporters: list[str | None]) -> Runbook:
    """The runbook whose rollback section a rollback job runs.

    ``requested`` (the request's ``runbook``) if given; else the runbook of the job that
    last reported the servers' version (``reporters``, one per server, None when
    unknown), if they agree and it has a rollback section; else the only runbook with
    one; else :class:`PatchbayError` on field ``runbook``."""
    if requested is not None:
        book = books.get(requested)
        if book is None:
            raise unknown_runbook(requested, books)
        if not book.spec.rollback:
            raise PatchbayError("invalid", f"runbook {requested} has no rollback section",
                                "runbook")
        return book
    named = {name for name in reporters if name is not None}
    if len(named) == 1:
        book = books.get(next(iter(named)))
        if book is not None and book.spec.rollback:
            return book
    able = [book for book in books.values() if book.spec.rollback]
    if len(able) == 1:
        return able[0]
    if not able:
        raise PatchbayError("invalid", "no runbook has a rollback section, so nothing can "
                            "roll a server back", "runbook")
    raise PatchbayError("invalid", "several runbooks have a rollback section ("
                        f"{', '.join(sorted(book.name for book in able))}): choose one "
                        "with runbook", "runbook")


def rollback_runbook(session: Session, books: dict[str, Runbook], names: list[str],
                     requested: str | None
                     ) -> tuple[RollbackRunbook, dict[str, RollbackTarget | None]]:
    """The rollback job for servers ``names``: its runbook (:func:`choose_runbook`) and
    the build each server goes back to, and why (None: it has none, which planning
    refuses). Unknown servers are refused here, naming the first."""
    if len(set(names)) != len(names):
        raise PatchbayError("invalid", "a server is listed twice", "servers")
    found = {server.name: server for server in
             session.scalars(select(Server).where(Server.name.in_(names)))}
    missing = [name for name in names if name not in found]
    if missing:
        raise PatchbayError("unknown_server", f"unknown server {missing[0]!r}", "servers")
    facts = {name: found[name].facts or {} for name in names}
    reporter_ids = {f.get("version_job_id") for f in facts.values()} - {None}
    runbook_of = dict(session.execute(select(Job.id, Job.runbook).where(
        Job.id.in_(reporter_ids), Job.kind.in_(("runbook", KIND)))).all())
    book = choose_runbook(books, requested,
                          [runbook_of.get(f.get("version_job_id")) for f in facts.values()])
    targets = rollback_targets(session, [(found[name].id, facts[name]) for name in names])
    return RollbackRunbook(book), {name: targets[found[name].id] for name in names}
