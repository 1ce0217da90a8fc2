"""One pydantic schema per client payload: the Socket.IO events' and the JSON API's
bodies, the same schema for the same command at both doors. They validate
(``services.commands.parse``) and, with ``extra="forbid"``, refuse unknown fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from services.schemas.fields import Name, Servers, StrategyField, Tags


class StartJob(BaseModel):
    """``job:start`` and ``job:plan``; ``POST /api/jobs`` and ``/api/jobs/plan``."""

    model_config = ConfigDict(extra="forbid")

    runbook: Name
    params: dict[Name, StrictStr | StrictInt] = Field(default_factory=dict, max_length=50)
    servers: Servers = None
    tags: Tags = None
    strategy: StrategyField = None


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

    command: StrictStr = Field(min_length=1, max_length=4096,
                               description="shell text, run as typed (no placeholders)")
    servers: Servers = None
    tags: Tags = None
    strategy: StrategyField = None


class RollbackServer(BaseModel):
    """``POST /api/servers/<name>/rollback`` (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    runbook: Name | None = Field(default=None, description="the runbook whose rollback "
                                 "section runs; default: the runbook of the job that last "
                                 "reported the servers' version, else the only runbook "
                                 "with a rollback section")


class RollbackServers(RollbackServer):
    """``POST /api/servers/rollback``: several servers, each back to its previous build."""

    servers: list[Name] = Field(min_length=1, max_length=5000,
                                description="server names, each with a previous build")


class FleetSubscribe(BaseModel):
    """``fleet:subscribe``; ``probe`` asks for a reachability round right away."""

    model_config = ConfigDict(extra="forbid")

    probe: StrictBool
