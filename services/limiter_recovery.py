"""The rate limiter's way back to its shared storage (Redis) after an outage.

When the storage fails, Flask-Limiter counts in memory, per node (``_storage_dead``),
and looks for the storage again only when a limited request comes, at intervals
doubling up to 32 s: for up to half a minute after Redis is back, each node would
still count login attempts on its own. :func:`recovery_check` is run by the node's
heartbeat and switches the limiter back as soon as the storage answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask_limiter import Limiter

log = logging.getLogger(__name__)


def recovery_check(limiter: Limiter) -> Callable[[], None]:
    """A check for the heartbeat: back to the shared storage once it answers again."""
    def check() -> None:
        # Flask-Limiter has no public switch back; these are the attributes its own
        # lazy recovery uses (flask_limiter/_extension.py, 3.x).
        storage = getattr(limiter, "_storage", None)
        if not getattr(limiter, "_storage_dead", False) or storage is None:
            return
        if storage.check():
            limiter._storage_dead = False
            log.warning("rate limit storage reachable again: limits are shared by "
                        "every node again")

    return check
