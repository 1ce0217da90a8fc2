"""Which failures of an event-log write pass by themselves, and what to store instead
of an event that the database refuses for good.

The writer retries a transient failure (the connection went, a lock or serialization
conflict, a deadlock, a server restarting) until the database answers. A permanent one
(the row itself is refused: a value the column type or the JSON encoder cannot take)
would fail the same way forever and stall every job of the node behind it, so the
writer isolates the event and stores it in a shape the database accepts, marked with
what was changed: the log stays gap-free and goes on.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes that a retry can get past (PostgreSQL): connection
# exceptions, serialization failure, deadlock, operator intervention (a restart).
TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P")
MARKER = "stored_changed"  # the data key saying what the writer changed, and why


def is_transient(error: BaseException) -> bool:
    """True when the same write may succeed later (retry); False when the database
    (or the encoding of the row) refuses it for good."""
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        if code:
            return str(code).startswith(TRANSIENT_SQLSTATE_PREFIXES)
        # SQLite and drivers without a code: locked, busy, disk I/O, gone away
        return isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError))
    return isinstance(error, (sa_exc.TimeoutError, sa_exc.DisconnectionError,
                              ConnectionError, TimeoutError))


def describe(error: BaseException) -> str:
    """A short reason for the log and the marker: the error's class and first line."""
    cause = getattr(error, "orig", None) or error.__cause__ or error
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    return f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__


def storable_copy(event: dict[str, Any], reason: str) -> dict[str, Any]:
    """The event with its data made plain JSON (unknown values as their repr, NUL
    characters and unpaired surrogates replaced) and marked with ``reason``."""
    data = _plain(json.loads(json.dumps(event["data"], default=repr)))
    if not isinstance(data, dict):
        data = {"value": data}
    data[MARKER] = f"the database refused this event as written ({reason}); values it " \
                   "could not take were replaced"
    return {**event, "data": data}


def minimal_copy(event: dict[str, Any], reason: str) -> dict[str, Any]:
    """The last resort for an event even :func:`storable_copy` could not store: only a
    status (what the job's and hosts' state needs) and the marker are kept."""
    status = event["data"].get("status") if isinstance(event["data"], dict) else None
    data: dict[str, Any] = {MARKER: f"the database refused this event ({reason}); its "
                                    "data was dropped"}
    if event["type"] in ("host_finished", "job_finished"):
        data["status"] = status if isinstance(status, str) and status.isidentifier() \
            else "failed"
    return {**event, "data": data}


def _plain(value: Any) -> Any:
    """Strings without NUL characters (PostgreSQL's text refuses them) or unpaired
    surrogates (not UTF-8), all the way down."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    return value
