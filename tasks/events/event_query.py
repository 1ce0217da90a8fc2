"""Which events of one job a reader asks for: a seq range, one server, some types.

Every reader of the log (pages, downloads, search, replay) states its question as an
:class:`EventQuery`, so each query is keyset-paginated on ``seq`` the same way (the
primary key, or ``ix_job_events_job_host_seq`` when one server is asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select

from models import JobEvent


@dataclass(frozen=True)
class EventQuery:
    """Which events of one job: ``after_seq < seq < before_seq`` (and ``seq <=
    through_seq``), optionally one server and some types, at most ``limit``. With
    ``before_seq`` the page is the *newest* ``limit`` events below it (for paging back);
    otherwise the oldest after ``after_seq``. Pages are always returned oldest first."""

    job_id: int
    after_seq: int = 0
    before_seq: int | None = None
    limit: int = 1000
    host: str | None = None
    types: tuple[str, ...] | None = None
    through_seq: int | None = None

    @property
    def backwards(self) -> bool:
        return self.before_seq is not None

    def filter(self, statement: Select[Any]) -> Select[Any]:
        """The conditions, without order or limit."""
        statement = statement.where(JobEvent.job_id == self.job_id,
                                    JobEvent.seq > self.after_seq)
        if self.before_seq is not None:
            statement = statement.where(JobEvent.seq < self.before_seq)
        if self.through_seq is not None:
            statement = statement.where(JobEvent.seq <= self.through_seq)
        if self.host is not None:
            statement = statement.where(JobEvent.host == self.host)
        if self.types:
            statement = statement.where(JobEvent.type.in_(self.types))
        return statement

    def where(self, statement: Select[Any], extra: int = 0) -> Select[Any]:
        """The conditions, ordered for the page, limited to ``limit + extra`` rows."""
        return self.filter(statement).order_by(
            JobEvent.seq.desc() if self.backwards else JobEvent.seq).limit(self.limit + extra)
