"""The retry schedule: exponential backoff after each failed attempt, until a deadline
counted from the event. A delivery may therefore arrive twice (at least once);
receivers deduplicate by its ``delivery`` id."""

from __future__ import annotations

from datetime import datetime, timedelta


def retry_delay(attempts: int, base: float, longest: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2 base, 4 base …
    never more than ``longest``."""
    return min(longest, base * 2 ** min(max(attempts - 1, 0), 40))


def next_attempt(attempts: int, now: datetime, created_at: datetime, *, base: float,
                 longest: float, give_up_after: float) -> datetime | None:
    """When to try again after a failed attempt, or None to give up. The last try
    comes at ``give_up_after`` seconds after the event, not later."""
    deadline = created_at + timedelta(seconds=give_up_after)
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=retry_delay(attempts, base, longest)), deadline)
