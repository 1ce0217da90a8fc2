"""Writing a batch of events whatever the database says: wait out what is transient,
isolate what is refused for good.

A transient failure (a lock, a lost connection) is retried until the database answers;
a permanent one isolates the refused event and writes the rest as it was. The refused
event is written as its storable copy, then its minimal one
(:mod:`tasks.events.write_errors`), and never dropped: the log stays gap-free.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from tasks.events.write_errors import describe, is_transient, minimal_copy, storable_copy

# The writer's logger: operators (and tests) know these messages by that name.
log = logging.getLogger("tasks.events.writer")


class Queued(Protocol):
    """An event waiting for the writer, with the job it belongs to."""

    job_id: int
    event: dict[str, Any]


Item = TypeVar("Item", bound=Queued)
# Writes a batch in one transaction; returns the items written and the fenced job ids.
Write = Callable[[list[Item]], tuple[list[Item], set[int]]]


def write_with_retry(write: Write[Item], batch: list[Item]) -> tuple[list[Item], set[int]]:
    """Write the batch's events of the jobs this node still owns; returns those
    written and the ids of the jobs found taken over by another node. A transient
    failure is retried until the database answers; a permanent one isolates the
    refused event (:mod:`tasks.events.write_errors`) and the rest is written as it was."""
    try:
        return retry_transient(write, batch)
    except Exception as error:  # noqa: BLE001 - refused for good: isolate it
        log.error("writing %d events was refused (%s); writing them one by one to "
                  "isolate the refused one", len(batch), describe(error))
    written: list[Item] = []
    fenced: set[int] = set()
    for item in batch:
        if item.job_id in fenced:
            continue
        done, lost = write_one_storable(write, item)
        written += done
        fenced |= lost
    return written, fenced


def write_one_storable(write: Write[Item], item: Item) -> tuple[list[Item], set[int]]:
    """One event, then (if refused for good) its storable copy, then its minimal one."""
    original, reason = item, ""
    for shape in (None, storable_copy, minimal_copy):
        if shape is not None:
            item = dataclasses.replace(  # type: ignore[type-var]
                item, event=shape(original.event, reason))
        try:
            return retry_transient(write, [item])
        except Exception as error:  # noqa: BLE001 - refused: try the next shape
            reason = describe(error)
            log.error("job %s: event %s (%s) refused by the database (%s)",
                      item.job_id, item.event["seq"], item.event["type"], reason)
    # Even a plain row is refused: the trouble is the database, not this event.
    # Never drop it: wait for the database as for a transient failure.
    delay = 0.5
    while True:
        time.sleep(delay)
        delay = min(delay * 2, 10.0)
        try:
            return write([item])
        except Exception as error:  # noqa: BLE001 - keep the log gap-free
            log.error("job %s: event %s still refused (%s); retrying in %.1f s",
                      item.job_id, item.event["seq"], describe(error), delay)


def retry_transient(write: Write[Item], batch: list[Item]) -> tuple[list[Item], set[int]]:
    """Write the batch, retrying transient failures; a permanent one is raised."""
    delay = 0.05
    while True:
        try:
            return write(batch)
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("writing %d events failed (%s); retrying in %.2f s",
                        len(batch), describe(error), delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
