"""The shape of each event type's ``data``, one ``TypedDict`` per type.

Keys a type may leave out are left out, so every shape is ``total=False``. The
catalogue (:mod:`tasks.events.catalogue`) names each type's shape; docs/live-api.md's
event tables are the public form of the same, and tests/engine/test_event_catalogue.py
checks that the two agree.
"""

from __future__ import annotations

from typing import Any, TypedDict


class JobStartedData(TypedDict, total=False):
    runbook: str
    kind: str  # runbook, adhoc or rollback
    params: dict[str, Any]
    strategy: dict[str, Any]
    servers: list[str]
    batches: list[list[str]]
    steps: list[str]


class BatchStartedData(TypedDict, total=False):
    batch: int  # 0 is the first batch (the canary when there are several)
    servers: list[str]


class HostStartedData(TypedDict, total=False):
    address: str


class WaitSpec(TypedDict, total=False):
    until: str
    every: float
    timeout: float
    on_timeout: str  # proceed or fail
    deadline: float


class StepStartedData(TypedDict, total=False):
    step: str
    index: int
    phase: str  # steps, on_failure, health (a soak's recheck) or probe (version_probe)
    command: str
    timeout: float
    run_dir: str
    wait: WaitSpec  # a wait step only


class OutputData(TypedDict, total=False):
    stream: str  # stdout or stderr
    step: str
    lines: list[str]
    offset: int
    count: int  # a replay's stub, instead of lines
    cut: bool  # the job's stored output reached its limit here


class WaitProbeData(TypedDict, total=False):
    step: str
    index: int
    phase: str
    attempt: int
    exit_code: int | None
    output: list[str]
    matched: bool
    remaining: float


class HostReconnectingData(TypedDict, total=False):
    reason: str
    timeout: float


class HostReconnectedData(TypedDict, total=False):
    attempts: int


class StepFinishedData(TypedDict, total=False):
    step: str
    index: int
    phase: str
    status: str  # ok, failed or cancelled
    exit_code: int | None
    duration: float
    reason: str | None
    signal: str  # TERM or KILL: the console stopped the step
    lost: bool


class HostFinishedData(TypedDict, total=False):
    status: str
    failed_step: str | None
    exit_code: int | None
    reason: str | None
    duration: float
    facts: dict[str, str]
    signal: str
    on_failure: str  # succeeded or failed: its on_failure steps ran
    version_state: str  # verified or unverified
    lost: bool


class JobRecoveredData(TypedDict, total=False):
    node: str
    servers: list[str]
    reason: str


class JobPausedData(TypedDict, total=False):
    batch: int
    reason: str
    next_batch: int


class GateDecisionData(TypedDict, total=False):
    by: str | None
    batch: int


class SoakStartedData(TypedDict, total=False):
    batch: int
    seconds: float
    until: float


class SoakFinishedData(TypedDict, total=False):
    batch: int
    passed: bool
    failed: list[str]
    reason: str


class JobFinishedData(TypedDict, total=False):
    status: str
    counts: dict[str, int]
    duration: float
    reason: str


class EventsPrunedData(TypedDict, total=False):
    days: int
    events: int
    pruned_at: str

