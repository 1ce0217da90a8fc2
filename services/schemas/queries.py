"""The shapes of the JSON API's query strings, for its OpenAPI document
(``blueprints/http/query_args.py`` parses them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.schemas.fields import JobStatus


class JobListQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=500)
    page: int = Field(default=1, ge=1)
    before_id: int | None = Field(default=None, ge=1, description="only jobs with a "
                                  "smaller id (go on after a page that ended early)")
    status: JobStatus | None = None
    runbook: str | None = None
    kind: Literal["runbook", "adhoc", "rollback"] | None = None
    user: str | None = Field(default=None, description="the starter's user name")
    since: str | None = Field(default=None, description="UTC date (2026-11-25) or time "
                              "(2026-11-25T12:00)")
    until: str | None = Field(default=None, description="UTC date or time; a date "
                              "includes that day")


class EventPageQuery(BaseModel):
    after_seq: int = Field(default=0, ge=0)
    before_seq: int | None = Field(default=None, ge=1, description="only seq below it; "
                                   "the page is then the newest limit events below it")
    limit: int = Field(default=1000, ge=1, le=5000)
    host: str | None = Field(default=None, description="one server's events")
    type: str | None = Field(default=None, description="comma-separated event types")
    max_lines: int | None = Field(default=None, ge=0, le=1_000_000,
                                  description="output beyond each server's first N lines "
                                  "as stubs ({stream, step, count})")


class SearchQuery(BaseModel):
    q: str = Field(min_length=1, max_length=200, description="case-insensitive text")
    host: str | None = None
    after_seq: int = Field(default=0, ge=0, description="only output events after it")
    before_seq: int | None = Field(default=None, ge=1,
                                   description="only output events below it")
    limit: int = Field(default=100, ge=1, le=500)
