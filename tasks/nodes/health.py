"""Is a service this node needs (the database, the message queue) reachable right now?

Whoever talks to the service reports each failure and success here (the heartbeat for
the database, the Socket.IO queue's listener and publisher for Redis); this module turns
those reports into one log line when the service goes (``database unreachable: <reason>;
retrying``) and one when it is back (``database reachable again after 12 s``), however
many attempts failed in between, and keeps what the Nodes page shows: down since when,
and the last outage (when it began, how long it lasted). The heartbeat writes that into
this node's row, so every node's page shows every node's view.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthState:
    """What the Nodes page shows of one service, as one node sees it."""

    down_since: datetime | None = None
    last_outage_at: datetime | None = None
    last_outage_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.down_since is None


class Dependency:
    """The reachability of one service, fed by whoever uses it (any thread or greenlet)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._state = HealthState()

    @property
    def state(self) -> HealthState:
        return self._state

    def failed(self, reason: str) -> None:
        """An attempt failed; logs only the first failure of an outage."""
        with self._lock:
            if self._state.down_since is not None:
                return
            self._state = HealthState(utcnow(), self._state.last_outage_at,
                                      self._state.last_outage_seconds)
        log.warning("%s unreachable: %s; retrying", self.name, reason)

    def succeeded(self) -> None:
        """An attempt worked; ends the outage (and logs it) if there was one."""
        with self._lock:
            since = self._state.down_since
            if since is None:
                return
            seconds = max(0.0, (utcnow() - since).total_seconds())
            self._state = HealthState(None, since, seconds)
        log.warning("%s reachable again after %.0f s", self.name, seconds)


def to_row(dependencies: list[Dependency]) -> dict[str, dict[str, Any]]:
    """The node row's ``health``: each service's state, times as ISO strings (UTC)."""
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {dependency.name: {"down_since": iso(dependency.state.down_since),
                              "last_outage_at": iso(dependency.state.last_outage_at),
                              "last_outage_seconds": dependency.state.last_outage_seconds}
            for dependency in dependencies}


def from_row(health: dict[str, Any] | None) -> dict[str, HealthState]:
    """The states in a node row's ``health`` (an older node wrote none: empty)."""
    def moment(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return {name: HealthState(moment(state.get("down_since")),
                              moment(state.get("last_outage_at")),
                              state.get("last_outage_seconds"))
            for name, state in (health or {}).items()}
