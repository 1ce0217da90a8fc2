"""One pydantic schema per client payload (Socket.IO events and JSON API bodies)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Name = Annotated[StrictStr, Field(min_length=1, max_length=128)]


class StartJob(BaseModel):
    """``job:start`` and ``job:plan``; ``POST /api/jobs`` and ``/api/jobs/plan``."""

    model_config = ConfigDict(extra="forbid")

    runbook: Name
    params: dict[Name, StrictStr | StrictInt] = Field(default_factory=dict, max_length=50)
    servers: list[Name] | None = Field(default=None, max_length=5000)
    tags: list[Name] | None = Field(default=None, max_length=100)
    strategy: dict[str, Any] | None = None


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: StrictInt = Field(ge=1)
    after_seq: StrictInt = Field(default=0, ge=0)
    # Per server, replay only this many output lines; later output events come as
    # stubs ({stream, step, count}) for the client to fetch by seq when it shows them.
    replay_lines: StrictInt | None = Field(default=None, ge=0, le=1_000_000)


class JobRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: StrictInt = Field(ge=1)


class AdhocCommand(BaseModel):
    """``job:adhoc``: one shell command, run as typed on the chosen servers."""

    model_config = ConfigDict(extra="forbid")

    command: StrictStr = Field(min_length=1, max_length=4096)
    servers: list[Name] | None = Field(default=None, max_length=5000)
    tags: list[Name] | None = Field(default=None, max_length=100)
    strategy: dict[str, Any] | None = None


class FleetSubscribe(BaseModel):
    """``fleet:subscribe``; ``probe`` asks for a reachability round right away."""

    model_config = ConfigDict(extra="forbid")

    probe: StrictBool
