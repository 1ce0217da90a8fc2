"""The per-account slow-down of logins, counted across every client address.

The login limits count per address (``LOGIN_RATE_LIMIT``) and per account and address
(``LOGIN_ACCOUNT_RATE_LIMIT``), so an attacker with many addresses gets many guesses.
This counts an account's failed logins from anywhere (``LOGIN_ACCOUNT_SLOWDOWN``, e.g.
"20 per 15 minutes"): past that, every login of the account, right or wrong, is
answered only after a delay that doubles every ``SLOWDOWN_STEP`` further failures, up
to ``LOGIN_SLOWDOWN_MAX_DELAY`` seconds. A delay, not a refusal: the attacker cannot
lock the real user out, who still logs in, a little later.

The counts live in the rate limiter's storage (Redis with several nodes, so the count is
the cluster's; this process's memory while that storage is unreachable). A typed user
name is counted whether it exists or not: the delay must not tell which names exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import Storage

SLOWDOWN_STEP = 10  # further failures per doubling of the delay
KEY_PREFIX = "patchbay/login-slowdown/"

log = logging.getLogger("patchbay.login")


@dataclass(frozen=True)
class Slowdown:
    """How many failures start the slow-down, over which window, and its longest delay."""

    after: int
    window_seconds: int
    max_delay: float

    @classmethod
    def from_config(cls, limit: str, max_delay: float) -> Slowdown:
        item: RateLimitItem = parse(limit)  # ValueError naming the text when malformed
        if float(max_delay) < 0:
            raise ValueError(f"a delay cannot be negative: {max_delay!r}")
        return cls(after=item.amount, window_seconds=item.get_expiry(),
                   max_delay=float(max_delay))

    def delay(self, failures: int) -> float:
        """Seconds to wait before answering a login of an account that failed
        ``failures`` times in the window: 0 below the threshold, then 1 s, doubling
        every SLOWDOWN_STEP further failures, at most ``max_delay``."""
        if failures < self.after:
            return 0.0
        doublings = (failures - self.after) // SLOWDOWN_STEP
        return min(self.max_delay, float(2 ** min(doublings, 32)))


def account_key(typed_username: str | None) -> str:
    return KEY_PREFIX + (typed_username or "").strip().lower()[:64]


class LoginSlowdown:
    """The counter, on a ``limits`` storage given by ``storage_of`` (asked each time:
    Flask-Limiter swaps in its memory fallback while the shared storage is down)."""

    def __init__(self, rule: Slowdown, storage_of: Callable[[], Storage]) -> None:
        self.rule = rule
        self._storage_of = storage_of

    def failures(self, typed_username: str | None) -> int:
        storage = self._storage_of()
        try:
            return int(storage.get(account_key(typed_username)) or 0)
        except storage.base_exceptions as error:  # a dead storage must not stop logins
            log.warning("login slow-down: failures not readable (%s)", type(error).__name__)
            return 0

    def note_failure(self, typed_username: str | None) -> bool:
        """Count one failed login; true when this one put the account in slow-down."""
        storage = self._storage_of()
        try:
            count = storage.incr(account_key(typed_username), self.rule.window_seconds)
        except storage.base_exceptions as error:
            log.warning("login slow-down: failure not counted (%s)", type(error).__name__)
            return False
        return count == self.rule.after
