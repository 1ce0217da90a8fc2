"""Planning: runbook + parameters + servers -> a :class:`~tasks.planning.job_plan.JobPlan`,
recorded with its servers held; re-runs.

The plan itself, and what of it is stored with a job, is :mod:`tasks.planning.job_plan`;
choosing and holding servers is :mod:`tasks.planning.server_choice`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import LIVE_JOB_STATUSES, Job, JobHost, ServerLock
from tasks.errors import PatchbayError
from tasks.planning.adhoc import KIND as ADHOC
from tasks.planning.adhoc import CommandRunbook
from tasks.planning.build_history import rollback_targets
from tasks.planning.inventory import resolve_vars
from tasks.planning.job_plan import HostPlan, JobPlan, real_params
from tasks.planning.rendered_steps import HostContext
from tasks.planning.rollback import KIND as ROLLBACK
from tasks.planning.rollback import RollbackRunbook
from tasks.planning.runbook_files import RunbookError
from tasks.planning.runbook_names import unknown_runbook
from tasks.planning.runbooks import Runbook
from tasks.planning.secrets import MASK, Masker, SecretBox, SecretUnreadable
from tasks.planning.server_choice import refuse_busy, select_servers
from tasks.rollout.strategy import batch_numbers, parse_strategy
from tasks.transport.protocol import Target


class Planner:
    """Validates job requests into plans and records them, holding their servers.

    ``secrets`` seals what a plan stores of its secret values; ``environ`` is where
    inventory variables ``{env: NAME}`` are read, each time a job is planned (the
    console's environment by default)."""

    def __init__(self, db_sessions: sessionmaker[Session],
                 runbooks: Callable[[], dict[str, Runbook]], default_parallel: int,
                 known_hosts: str | None, node_id: str, secrets: SecretBox,
                 environ: Mapping[str, str] | None = None) -> None:
        self.db_sessions = db_sessions
        self.runbooks = runbooks
        self.default_parallel = default_parallel
        self.known_hosts = known_hosts
        self.node_id = node_id
        self.secrets = secrets
        self.environ = os.environ if environ is None else environ
        self._record_lock = threading.Lock()

    def plan(self, runbook: str | Runbook, params: Any, servers: list[str] | None = None,
             tags: list[str] | None = None, strategy: Any = None) -> JobPlan:
        """Validate a job request and render every command; raise :class:`PatchbayError`.

        ``runbook`` is a runbook's name, or a runbook object built in memory (an ad-hoc
        command's :class:`~tasks.planning.adhoc.CommandRunbook`)."""
        try:
            book = runbook if isinstance(runbook, Runbook) else self.runbooks().get(runbook)
        except RunbookError as exc:
            raise PatchbayError("runbook_invalid", str(exc), "runbook") from None
        if book is None:
            raise unknown_runbook(runbook, self.runbooks())
        values = book.validate_params(params)
        chosen_strategy = parse_strategy(strategy, book.spec.strategy, self.default_parallel)
        if chosen_strategy.soak_seconds is not None and \
                not any(step.health for step in book.spec.steps):
            raise PatchbayError("invalid", f"a soak gate runs the runbook's health steps "
                                f"again, and runbook {book.name} has none (mark a step "
                                "health: true)", "strategy.gate")
        secret_params = book.secret_params()
        param_secrets = [values[name] for name in sorted(secret_params) if values[name]]
        chosen = self._chosen_servers(servers, tags)
        # Typed text (an ad-hoc command, a parameter) may hold a secret of any server
        # of the job: what is shown of it is masked with all of them.
        everything = Masker(param_secrets + [v for *_, found in chosen for v in found])
        shown = {name: MASK if name in secret_params else everything(value)
                 for name, value in values.items()}
        hosts = [HostPlan(server_id, context.name, target,
                          book.render(values, context, shown),
                          book.render_on_failure(values, context, shown),
                          sorted(set(param_secrets + found)),
                          book.render_version_probe(values, context, shown))
                 for server_id, context, target, found in chosen]
        if isinstance(book, RollbackRunbook):
            target_version = book.target_version([context for _, context, *_ in chosen])
        else:
            target_version = values.get(book.spec.version_param or "") or None
        for host, (_, context, *_) in zip(hosts, chosen, strict=True):
            host.from_version = context.version
            host.to_version = context.previous_version \
                if isinstance(book, RollbackRunbook) else target_version
        return JobPlan(book.name, book.kind, [s.name for s in book.spec.steps], values,
                       chosen_strategy, hosts, shown, target_version)

    def _chosen_servers(self, servers: list[str] | None, tags: list[str] | None
                        ) -> list[tuple[int, HostContext, Target, list[str]]]:
        """Per server of the request: its id, what its templates may know (its
        variables resolved now), where to connect, and its secret values."""
        with self.db_sessions() as session:
            chosen = []
            picked = select_servers(session, servers, tags)
            going_back = rollback_targets(session, [(s.id, s.facts) for s in picked])
            for server in picked:
                resolved = resolve_vars(server.name, dict(server.vars or {}), self.environ,
                                        self.secrets)
                context = HostContext(server.name, server.host, server.port, server.user,
                                      resolved.values, resolved.secret, resolved.unavailable,
                                      getattr(going_back[server.id], "version", None),
                                      (server.facts or {}).get("version"))
                target = Target(server.name, server.host, server.port, server.user,
                                server.key_path, server.known_hosts or self.known_hosts,
                                accept_new_host_keys=server.host_key_policy == "accept-new")
                chosen.append((server.id, context, target, resolved.secret_values()))
        return chosen

    def record(self, plan: JobPlan, user_id: int | None, rerun_of: int | None) -> Job:
        """Lock the plan's servers and record the job as running on this node."""
        batch_of = batch_numbers(plan.strategy.batch_sizes(len(plan.hosts)))
        server_ids = [h.server_id for h in plan.hosts if h.server_id is not None]
        with self._record_lock, self.db_sessions() as session:
            refuse_busy(session, server_ids)
            job = Job(runbook=plan.runbook_name, kind=plan.kind, params=plan.shown_params,
                      strategy=plan.strategy.model_dump(), status="running",
                      created_by_id=user_id, node_id=self.node_id, rerun_of_id=rerun_of,
                      target_version=plan.target_version)
            session.add(job)
            session.flush()
            hidden_params = plan.params if plan.params != plan.shown_params else None
            for position, host in enumerate(plan.hosts):
                session.add(JobHost(job_id=job.id, server_id=host.server_id, name=host.name,
                                    position=position, batch=batch_of[position],
                                    plan=host.to_json(self.secrets, hidden_params
                                                      if position == 0 else None),
                                    from_version=host.from_version,
                                    to_version=host.to_version))
                if host.server_id is not None:
                    session.add(ServerLock(server_id=host.server_id, job_id=job.id))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                refuse_busy(session, server_ids)
                raise
            return job

    def rerun_plan(self, job_id: int, skip: Collection[str] = ()) -> JobPlan:
        """A plan with the same runbook, parameters and strategy as job ``job_id``, on
        its servers that did not succeed, but for those in ``skip`` (fixed since)."""
        with self.db_sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
            if job.status in (*LIVE_JOB_STATUSES, "succeeded"):
                raise PatchbayError("invalid",
                                    f"job #{job_id} is {job.status}: nothing to re-run",
                                    "job_id")
            names = [host.name for host in job.hosts
                     if host.status != "succeeded" and host.name not in skip]
            runbook: str | Runbook = CommandRunbook() if job.kind == ADHOC else job.runbook
            if job.kind == ROLLBACK:
                runbook = self._rollback_runbook(job.runbook)
            try:
                params = real_params(job, self.secrets)
            except SecretUnreadable as exc:
                raise PatchbayError("invalid", f"job #{job_id} cannot be re-run: "
                                    f"{exc.message}; start a new job instead",
                                    "job_id") from None
            strategy = dict(job.strategy)
        if job.kind == ROLLBACK:  # the runbook's defaults as they are now
            params = {}
        return self.plan(runbook, params, names, strategy=strategy)

    def _rollback_runbook(self, name: str) -> RollbackRunbook:
        """The rollback section of runbook ``name`` as it is now, for a re-run."""
        try:
            book = self.runbooks().get(name)
        except RunbookError as exc:
            raise PatchbayError("runbook_invalid", str(exc), "runbook") from None
        if book is None:
            raise unknown_runbook(name, self.runbooks())
        return RollbackRunbook(book)

