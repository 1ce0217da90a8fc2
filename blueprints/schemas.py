"""One pydantic schema per client payload (Socket.IO events and JSON API bodies)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

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


class JobRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: StrictInt = Field(ge=1)
