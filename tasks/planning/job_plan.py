"""A planned job and each server's part of it, and how they are stored with the job.

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

from dataclasses import asdict, dataclass, field
from typing import Any

from models import Job
from tasks.planning.rendered_steps import RenderedStep, WaitPlan
from tasks.planning.secrets import SecretBox
from tasks.rollout.strategy import Strategy, split_batches
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
    from_version: str | None = None  # the build it ran when planned (JobHost.from_version)
    to_version: str | None = None  # the build the job installs there (JobHost.to_version)

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
