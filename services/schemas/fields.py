"""The field types the schemas share: a name, a timestamp, a job's and a server's
status, and the targets and strategy of a job (servers or tags)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr

from models import HOST_STATUSES, JOB_STATUSES

Name = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Timestamp = Annotated[str, Field(description="UTC, ISO 8601, e.g. 2026-11-25T12:00:00Z")]
JobStatus = Literal[JOB_STATUSES]  # type: ignore[valid-type]
HostStatus = Literal[HOST_STATUSES]  # type: ignore[valid-type]
Servers = Annotated[list[Name] | None, Field(
    max_length=5000, description="server names; give servers or tags, not both")]
Tags = Annotated[list[Name] | None, Field(
    max_length=100, description="every server carrying one of these tags")]
StrategyField = Annotated[dict[str, Any] | None, Field(
    description="parallel (servers at once), batches (sizes or percentages, the first "
    "a canary), max_failures (count or percentage), timeout (seconds per step); "
    "missing values come from the runbook, then the defaults")]
