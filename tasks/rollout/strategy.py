"""Rollout strategy: how many servers at once, in which batches, and when to stop.

Pure logic, no I/O: the runner asks it how to split servers into batches and whether
the failures seen so far stop the rollout.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from tasks.errors import PatchbayError

PERCENT = re.compile(r"([0-9]{1,3})%")


class SoakGate(BaseModel):
    """Wait ``soak`` seconds after a batch, then run its health steps again."""

    model_config = ConfigDict(extra="forbid")

    soak: StrictInt | StrictFloat = Field(gt=0, le=86_400)


class Strategy(BaseModel):
    """``parallel`` servers at once; ``batches`` of sizes or percentages (the first is a
    canary); ``max_failures`` as a count or percentage; per-step ``timeout`` in seconds;
    ``gate`` between batches: ``auto`` (go on), ``manual`` (pause until promoted) or
    ``{"soak": SECONDS}`` (wait, re-run the health steps, go on if they pass)."""

    model_config = ConfigDict(extra="forbid")

    parallel: StrictInt = Field(default=10, ge=1, le=1000)
    batches: list[StrictInt | StrictStr] = Field(default_factory=list, max_length=100)
    max_failures: StrictInt | StrictStr | None = None
    timeout: StrictInt | StrictFloat | None = Field(default=None, gt=0, le=86_400)
    gate: Literal["auto", "manual"] | SoakGate = "auto"

    @field_validator("gate", mode="before")
    @classmethod
    def _gate(cls, value: Any) -> Any:
        shape = 'auto, manual or {"soak": SECONDS}'
        if isinstance(value, str) and value not in ("auto", "manual"):
            raise ValueError(f"gate {value!r} must be {shape}")
        if isinstance(value, dict):
            if set(value) != {"soak"}:
                raise ValueError(f"gate must be {shape}")
            seconds = value["soak"]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                    or not 0 < seconds <= 86_400:
                raise ValueError("gate soak must be a number of seconds, above 0 and "
                                 "at most 86400")
            return SoakGate(soak=seconds)
        if not isinstance(value, str | SoakGate):
            raise ValueError(f"gate must be {shape}")
        return value

    @property
    def soak_seconds(self) -> float | None:
        return float(self.gate.soak) if isinstance(self.gate, SoakGate) else None

    @field_validator("batches")
    @classmethod
    def _batch_sizes(cls, value: list[int | str]) -> list[int | str]:
        for size in value:
            _check_amount(size, "batch size", minimum=1)
        return value

    @field_validator("max_failures")
    @classmethod
    def _failure_limit(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            _check_amount(value, "max_failures", minimum=0)
        return value

    def batch_sizes(self, host_count: int) -> list[int]:
        """Split ``host_count`` servers into batch sizes; the last batch takes the rest."""
        sizes: list[int] = []
        remaining = host_count
        for size in self.batches:
            if remaining <= 0:
                break
            count = min(remaining, _resolve(size, host_count, round_up=True) or 1)
            sizes.append(count)
            remaining -= count
        if remaining > 0:
            sizes.append(remaining)
        return sizes

    def failure_limit(self, host_count: int) -> int | None:
        """How many failed servers stop the rollout (``None``: never stop early)."""
        if self.max_failures is None:
            return None
        return max(1, _resolve(self.max_failures, host_count, round_up=False))


def _check_amount(value: Any, label: str, minimum: int) -> None:
    if isinstance(value, bool):
        raise ValueError(f"{label} must be a whole number or a percentage like '25%'")
    if isinstance(value, int):
        if value < minimum:
            raise ValueError(f"{label} must be at least {minimum}")
        return
    match = PERCENT.fullmatch(value)
    if not match or not minimum <= int(match.group(1)) <= 100:
        raise ValueError(f"{label} {value!r} must be a whole number or a percentage like '25%'")


def _resolve(amount: int | str, total: int, round_up: bool) -> int:
    if isinstance(amount, int):
        return amount
    share = int(amount[:-1]) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def parse_strategy(raw: Any, defaults: dict[str, Any], default_parallel: int) -> Strategy:
    """Merge the job's strategy over the runbook's defaults; errors name the field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PatchbayError("invalid", "strategy must be an object", "strategy")
    merged = {"parallel": default_parallel, **defaults, **raw}
    try:
        return Strategy.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][:1])
        message = first["msg"].removeprefix("Value error, ")
        raise PatchbayError("invalid", f"strategy.{where}: {message}",
                            f"strategy.{where}") from exc


# -- rollout rules: pure functions the runner asks as servers finish ------------------

CANARY_FAILED = "the canary batch failed"


def split_batches(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    """``items`` cut into consecutive batches of ``sizes``."""
    batches, start = [], 0
    for size in sizes:
        batches.append(items[start:start + size])
        start += size
    return batches


def batch_numbers(sizes: list[int]) -> list[int]:
    """The batch number of each position, for batches of ``sizes``."""
    return [index for index, size in enumerate(sizes) for _ in range(size)]


def failure_stop(failures: int, limit: int | None, max_failures: int | str | None
                 ) -> str | None:
    """Why the rollout stops after ``failures`` failed servers, or None to go on; in
    the words of the form's "Stop after failures" ("stopped after 1 failure")."""
    if limit is None or failures < limit:
        return None
    text = f"stopped after {failures} failure{'' if failures == 1 else 's'}"
    if isinstance(max_failures, str):  # a percentage of the job's servers
        text += f" ({max_failures} of the servers)"
    return text


def canary_stop(batch_index: int, batch_count: int, failures: int) -> str | None:
    """A failure in the first of several batches stops the rollout there."""
    if batch_index == 0 and batch_count > 1 and failures:
        return CANARY_FAILED
    return None


def soak_stop(batch_index: int, seconds: float, failed: list[str]) -> str:
    """Why the rollout stops when a batch failed its health check after a soak (a gate
    follows a batch that has another after it, so the first one is a canary)."""
    which = "the canary" if batch_index == 0 else f"batch {batch_index + 1}"
    text = f"{which} failed its health check after a {seconds:g} s soak"
    return f"{text} ({', '.join(failed)})" if failed else text


def count_statuses(statuses: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def final_status(counts: dict[str, int], host_count: int, cancelled: bool) -> str:
    """The job's status from its servers' statuses."""
    if cancelled:
        return "cancelled"
    if counts.get("succeeded", 0) == host_count:
        return "succeeded"
    return "failed"


def not_started_outcome(cancelled: bool, stop_reason: str | None) -> tuple[str, str]:
    """Status and reason of a server the rollout never reached."""
    if cancelled:
        return "cancelled", "job cancelled before this server started"
    return "skipped", f"not started: {stop_reason}"
