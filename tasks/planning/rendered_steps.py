"""A runbook's steps as planned for one server, and what a template may know of it.

These are the values that travel from planning to running (the step driver, the wait
probes, recovery): plain frozen data, with no schema and no rendering attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HostContext:
    """What a template may know of the server it runs on.

    ``secret_vars`` name the variables shown masked; ``unavailable`` maps a variable
    whose value cannot be had now (its environment variable is unset, its sealed value
    unreadable) to the error a step that uses it fails planning with."""

    name: str
    address: str
    port: int
    user: str
    vars: dict[str, Any]
    secret_vars: frozenset[str] = frozenset()
    unavailable: dict[str, str] = field(default_factory=dict)
    previous_version: str | None = None  # for rollback steps: the build it goes back to
    version: str | None = None  # the build it reports now (a job's "from")


@dataclass(frozen=True)
class WaitPlan:
    """A wait step as planned: its timeout resolved to seconds."""

    until: str
    every: float
    timeout: float
    on_timeout: str

    def to_json(self) -> dict[str, Any]:
        return {"until": self.until, "every": self.every, "timeout": self.timeout,
                "on_timeout": self.on_timeout}


@dataclass(frozen=True)
class RenderedStep:
    """One step as it runs: ``command`` is what the server gets (secrets included,
    kept in memory only), ``shown`` what anyone else sees (secrets masked). A wait
    step's ``command`` is its probe."""

    name: str
    command: str
    timeout: float | None
    capture: str | None
    shown: str | None = None  # None: nothing secret, shown as the command
    wait: WaitPlan | None = None
    health: bool = False

    def __post_init__(self) -> None:
        if self.shown is None:
            object.__setattr__(self, "shown", self.command)
