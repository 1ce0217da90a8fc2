"""Planning: runbook + parameters + servers -> a :class:`JobPlan`; server locks; re-runs.

A plan holds every command exactly as it will run. Recording a job stores each
server's part of the plan with it, so a console that resumes the job after a restart
runs what was planned, even if the runbook file or the inventory changed since.

Secrets (:mod:`tasks.planning.secrets`): a plan keeps the real parameters and commands in
memory, and what may be shown beside them (``shown_params``, each step's ``shown``).
What is stored is what may be shown; the real commands, parameters and the values to
mask in a server's output are stored sealed with the console's key, one token per
server (``job_hosts.plan["sealed"]``; the real parameters with the first server's),
only when they differ from what is shown.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import LIVE_JOB_STATUSES, Job, JobHost, Server, ServerLock
from tasks.errors import PatchbayError
from tasks.planning.adhoc import KIND as ADHOC
from tasks.planning.adhoc import CommandRunbook
from tasks.planning.inventory import resolve_vars
from tasks.planning.rendered_steps import HostContext, RenderedStep, WaitPlan
from tasks.planning.rollback import KIND as ROLLBACK
from tasks.planning.rollback import RollbackRunbook
from tasks.planning.runbook_files import RunbookError
from tasks.planning.runbooks import Runbook
from tasks.planning.secrets import MASK, Masker, SecretBox, SecretUnreadable
from tasks.rollout.strategy import Strategy, batch_numbers, parse_strategy, split_batches
from tasks.transport.protocol import Target


@dataclass
class HostPlan:
    """One server's part of a planned job: where to connect and what will run.

    ``secrets`` are the secret values its output lines are masked with (the job's
    secret parameters and this server's secret variables)."""

    server_id: int | None
    name: str
    target: Target
    steps: list[RenderedStep]
    on_failure: list[RenderedStep]
    secrets: list[str] = field(default_factory=list)
    version_probe: RenderedStep | None = None  # the runbook's, run when no step reported

    def to_json(self, box: SecretBox, params: dict[str, str] | None = None
                ) -> dict[str, Any]:
        """What ``job_hosts.plan`` stores: the shown commands in clear; the real ones
        (where they differ), the secrets and ``params`` (the job's real parameters,
        for a re-run) sealed by ``box``."""
        data: dict[str, Any] = {"target": asdict(self.target)}
        hidden: dict[str, Any] = {}
        for phase in ("steps", "on_failure"):
            steps: list[RenderedStep] = getattr(self, phase)
            data[phase] = [_stored_step(s) for s in steps]
            if any(s.command != s.shown for s in steps):
                hidden[phase] = [s.command if s.command != s.shown else None
                                 for s in steps]
        if self.version_probe is not None:
            data["version_probe"] = _stored_step(self.version_probe)
            if self.version_probe.command != self.version_probe.shown:
                hidden["version_probe"] = self.version_probe.command
        if self.secrets:
            hidden["secrets"] = self.secrets
        if params is not None:
            hidden["params"] = params
        if hidden:
            data["sealed"] = box.seal(hidden)
        return data

    @classmethod
    def from_json(cls, server_id: int | None, name: str, data: dict[str, Any],
                  box: SecretBox) -> HostPlan:
        """The stored plan of one server; :class:`SecretUnreadable` if its sealed part
        cannot be opened with ``box``."""
        hidden = open_sealed(data, box, name)

        def steps(phase: str) -> list[RenderedStep]:
            real = hidden.get(phase) or [None] * len(data[phase])
            return [RenderedStep(step["name"], command or step["command"], step["timeout"],
                                 step["capture"], step["command"],
                                 WaitPlan(**step["wait"]) if step.get("wait") else None,
                                 bool(step.get("health")))
                    for step, command in zip(data[phase], real, strict=True)]

        probe = None
        if data.get("version_probe"):
            stored = data["version_probe"]
            probe = RenderedStep(stored["name"], hidden.get("version_probe") or stored["command"],
                                 stored["timeout"], stored["capture"], stored["command"])
        return cls(server_id, name, Target(**data["target"]), steps("steps"),
                   steps("on_failure"), list(hidden.get("secrets") or []), probe)


def _stored_step(step: RenderedStep) -> dict[str, Any]:
    stored: dict[str, Any] = {"name": step.name, "command": step.shown,
                              "timeout": step.timeout, "capture": step.capture}
    if step.wait is not None:
        stored["wait"] = step.wait.to_json()
    if step.health:
        stored["health"] = True
    return stored


def open_sealed(data: dict[str, Any], box: SecretBox, name: str) -> dict[str, Any]:
    """The sealed part of a stored host plan (``{}`` when nothing was secret)."""
    if "sealed" not in data:
        return {}
    return box.open(data["sealed"], f"the secret values planned for server {name}")


@dataclass
class JobPlan:
    """What a job will do: the runbook's name, kind and step names travel with it so a
    resumed job needs no runbook file."""

    runbook_name: str
    kind: str
    step_names: list[str]
    params: dict[str, str]  # the real values, in memory only
    strategy: Strategy
    hosts: list[HostPlan]
    shown_params: dict[str, str] | None = None  # None: nothing secret
    target_version: str | None = None  # the build it installs (Job.target_version)

    def __post_init__(self) -> None:
        if self.shown_params is None:
            self.shown_params = dict(self.params)

    def batches(self) -> list[list[HostPlan]]:
        return split_batches(self.hosts, self.strategy.batch_sizes(len(self.hosts)))

    def preview(self) -> dict[str, Any]:
        """What ``job:plan`` shows: per server, the exact commands that will run."""
        return {
            "runbook": self.runbook_name,
            "params": self.shown_params,
            "strategy": self.strategy.model_dump(),
            "batches": [[h.name for h in batch] for batch in self.batches()],
            "hosts": [
                {"name": h.name,
                 "steps": [{"name": s.name, "command": s.shown} for s in h.steps],
                 "on_failure": [{"name": s.name, "command": s.shown}
                                for s in h.on_failure],
                 "version_probe": h.version_probe.shown if h.version_probe else None}
                for h in self.hosts
            ],
        }


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
            raise PatchbayError("unknown_runbook", f"no runbook named {runbook!r}", "runbook")
        values = book.validate_params(params)
        chosen_strategy = parse_strategy(strategy, book.spec.strategy, self.default_parallel)
        if chosen_strategy.soak_seconds is not None and \
                not any(step.health for step in book.spec.steps):
            raise PatchbayError("invalid", f"a soak gate runs the runbook's health steps "
                                f"again, and runbook {book.name} has none (mark a step "
                                "health: true)", "strategy.gate")
        secret_params = book.secret_params()
        param_secrets = [values[name] for name in sorted(secret_params) if values[name]]
        with self.db_sessions() as session:
            chosen = []
            for server in select_servers(session, servers, tags):
                resolved = resolve_vars(server.name, dict(server.vars or {}), self.environ,
                                        self.secrets)
                context = HostContext(server.name, server.host, server.port, server.user,
                                      resolved.values, resolved.secret, resolved.unavailable,
                                      (server.facts or {}).get("previous_version"))
                target = Target(server.name, server.host, server.port, server.user,
                                server.key_path, server.known_hosts or self.known_hosts,
                                accept_new_host_keys=server.host_key_policy == "accept-new")
                chosen.append((server.id, context, target, resolved.secret_values()))
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
        return JobPlan(book.name, book.kind, [s.name for s in book.spec.steps], values,
                       chosen_strategy, hosts, shown, target_version)

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
                                                      if position == 0 else None)))
                if host.server_id is not None:
                    session.add(ServerLock(server_id=host.server_id, job_id=job.id))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                refuse_busy(session, server_ids)
                raise
            return job

    def rerun_plan(self, job_id: int) -> JobPlan:
        """A plan with the same runbook, parameters and strategy as job ``job_id``, on
        its servers that did not succeed."""
        with self.db_sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise PatchbayError("not_found", f"no job #{job_id}", "job_id")
            if job.status in (*LIVE_JOB_STATUSES, "succeeded"):
                raise PatchbayError("invalid",
                                    f"job #{job_id} is {job.status}: nothing to re-run",
                                    "job_id")
            names = [host.name for host in job.hosts if host.status != "succeeded"]
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
            raise PatchbayError("unknown_runbook", f"no runbook named {name!r}", "runbook")
        return RollbackRunbook(book)


def real_params(job: Job, box: SecretBox) -> dict[str, str]:
    """A recorded job's parameters with their secret values (sealed with its first
    server's plan when any was masked)."""
    first = next((host for host in job.hosts if host.plan), None)
    hidden = open_sealed(first.plan, box, first.name) if first is not None else {}
    return dict(hidden.get("params") or job.params)


def stored_plan(job: Job, box: SecretBox) -> JobPlan:
    """The plan a recorded job runs, rebuilt from what was stored with it;
    :class:`SecretUnreadable` when its secret values cannot be opened with ``box``."""
    hosts = [HostPlan.from_json(h.server_id, h.name, h.plan, box) for h in job.hosts
             if h.plan]
    step_names = [s.name for s in hosts[0].steps] if hosts else []
    return JobPlan(job.runbook, job.kind, step_names, real_params(job, box),
                   Strategy.model_validate(job.strategy), hosts, dict(job.params))


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
