"""The event catalogue: every type of event a job's log holds, described once.

For each type: the shape of its ``data`` (a ``TypedDict``; keys a type may leave out are
left out, so every shape is ``total=False``), whether it is about the job or one server,
and the part it plays at a gate. :func:`describe` words an event for a destination, by
the table's form for it: ``log``, the downloaded log's lines; ``chat``, the one line a
chat webhook posts (services.webhooks.payloads.slack) for the types it posts.

docs/live-api.md's event tables are the public contract: tests/engine/test_event_catalogue.py
checks this module against them, and against the CLI's own copy of the types
(``patchbay_cli.story``, which imports nothing of the app). Clients ignore types they do
not know, so a new type is added here, in the doc and in the CLI together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, overload

# -- the shapes of each event's data -------------------------------------------------


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


# -- the downloaded log's words ------------------------------------------------------

LogText = Callable[[dict[str, Any]], str]


def _batch_number(data: dict[str, Any]) -> int:
    """The 1-based number of the event's batch (a missing or null ``batch`` is the first)."""
    return (data.get("batch") or 0) + 1


def _outcome_details(data: dict[str, Any]) -> str:
    """``, exit code 2, 1.5 s, reason`` (what of it the event has)."""
    parts = []
    if data.get("exit_code") is not None:
        parts.append(f"exit code {data['exit_code']}")
    if data.get("duration") is not None:
        parts.append(f"{data['duration']} s")
    if data.get("reason"):
        parts.append(str(data["reason"]))
    return ", " + ", ".join(parts) if parts else ""


_PHASE_NOTE = {"on_failure": " (on failure)", "health": " (soak health check)",
               "probe": " (no step reported the build)"}


def _log_step_started(data: dict[str, Any]) -> str:
    phase = data.get("phase")
    text = f"step {data.get('step')} started" + (
        _PHASE_NOTE.get(phase, "") if isinstance(phase, str) else "")
    if isinstance(data.get("wait"), dict):
        wait = data["wait"]
        text += f": waiting for {wait.get('until')} every {wait.get('every')} s, up to " \
                f"{wait.get('timeout')} s, then {wait.get('on_timeout')}"
    return text


def _log_wait_probe(data: dict[str, Any]) -> str:
    """One line per probe, ending with its last output line."""
    output = data.get("output") or []
    return f"probe {data.get('attempt')} of {data.get('step')}: exit code " \
           f"{data.get('exit_code')}, {'matched' if data.get('matched') else 'no match'}, " \
           f"{data.get('remaining')} s left" + (f": {output[-1]}" if output else "")


def _log_soak_finished(data: dict[str, Any]) -> str:
    if data.get("passed"):
        return f"batch {_batch_number(data)} passed its health checks after the soak"
    return data.get("reason") or f"batch {_batch_number(data)} failed its health check " \
        f"after the soak ({', '.join(data.get('failed') or [])})"


def _log_finished(data: dict[str, Any]) -> str:
    text = f"finished: {data.get('status')}" + _outcome_details(data)
    if data.get("counts"):
        text += " (" + ", ".join(f"{n} {s}" for s, n in data["counts"].items()) + ")"
    return text


def _log_job_started(data: dict[str, Any]) -> str:
    return f"started: {data.get('runbook')} on {len(data.get('servers') or [])} server(s)"


def _log_batch_started(data: dict[str, Any]) -> str:
    return f"batch {data.get('batch', 0) + 1}: {', '.join(data.get('servers') or [])}"


def _log_step_finished(data: dict[str, Any]) -> str:
    return f"step {data.get('step')}: {data.get('status')}" + _outcome_details(data)


def _log_host_reconnecting(data: dict[str, Any]) -> str:
    return f"connection lost ({data.get('reason')}); reconnecting for up to " \
           f"{data.get('timeout')} s"


def _log_job_paused(data: dict[str, Any]) -> str:
    return f"paused after batch {_batch_number(data)}: waiting at the gate " \
           "for an operator to promote or abort"


def _log_job_aborted(data: dict[str, Any]) -> str:
    return f"aborted at the gate by {data.get('by')} after batch {_batch_number(data)}"


def _log_soak_started(data: dict[str, Any]) -> str:
    return f"soaking batch {_batch_number(data)} for {data.get('seconds')} s, " \
           "then its health checks again"


def _log_events_pruned(data: dict[str, Any]) -> str:
    return f"events pruned after {data.get('days')} days ({data.get('events')} " \
           "events removed)"


# -- a chat channel's words ----------------------------------------------------------


@dataclass(frozen=True)
class ChatContext:
    """What a chat line says besides the event: the job's ``title`` as the destination
    shows it (a link, in its markup), who started it, its status, the server's row (a
    ``host_finished``: ``name``, ``failed_step``, ``exit_code``, ``reason``), and
    ``quote``, which escapes a quoted value for the destination's markup."""

    title: str
    created_by: str | None
    job_status: str | None
    host: dict[str, Any] | None
    quote: Callable[[Any], str]


ChatText = Callable[[dict[str, Any], ChatContext], str]
CHAT_REASON_CHARS = 300  # a reason quoted in a chat line is cut to this many characters


def _chat_job_started(data: dict[str, Any], context: ChatContext) -> str:
    servers = len(data.get("servers") or [])
    who = f" by {context.quote(context.created_by)}" if context.created_by else ""
    return f":rocket: {context.title} started on {servers} server(s){who}"


def _chat_host_failed(_data: dict[str, Any], context: ChatContext) -> str:
    """A failed server, as its row says (the event's data is not quoted)."""
    host, quote = context.host or {}, context.quote
    text = f":x: {context.title}: server {quote(host.get('name'))} failed"
    if host.get("failed_step"):
        text += f" at step {quote(host['failed_step'])}"
    if host.get("exit_code") is not None:
        text += f" (exit {host['exit_code']})"
    if host.get("reason"):
        text += f": {quote(host['reason'])[:CHAT_REASON_CHARS]}"
    return text


_CHAT_ICON = {"succeeded": ":white_check_mark:", "failed": ":x:"}


def _chat_job_finished(data: dict[str, Any], context: ChatContext) -> str:
    quote = context.quote
    status = data.get("status", context.job_status)
    icon = _CHAT_ICON.get(status, ":warning:")
    counts = ", ".join(f"{count} {state}" for state, count in
                       sorted((data.get("counts") or {}).items()))
    text = f"{icon} {context.title} finished: {quote(status)}"
    if counts:
        text += f" ({quote(counts)})"
    if data.get("reason"):
        text += f": {quote(data['reason'])[:CHAT_REASON_CHARS]}"
    return text


# -- the catalogue -------------------------------------------------------------------


@dataclass(frozen=True)
class EventKind:
    """One event type. ``about`` is ``job`` (its ``host`` is null) or ``server``;
    ``gate_state`` is the state it leaves its gate in (:data:`GATE_STATES`);
    ``manual_gate``: it pauses a job at a manual gate or ends the pause. The forms:
    ``log`` words its data for the downloaded log (``None``: the log says the type's
    name); ``chat`` for a chat channel (``None``: never posted there)."""

    name: str
    shape: type
    about: Literal["job", "server"]
    log: LogText | None = None
    gate_state: str | None = None
    manual_gate: bool = False
    chat: ChatText | None = None


OUTPUT = "output"  # the one type whose log form is many lines: its own

CATALOGUE: Mapping[str, EventKind] = {kind.name: kind for kind in (
    EventKind("job_started", JobStartedData, "job", _log_job_started,
              chat=_chat_job_started),
    EventKind("batch_started", BatchStartedData, "job", _log_batch_started),
    EventKind("host_started", HostStartedData, "server",
              lambda data: f"connecting to {data.get('address')}"),
    EventKind("step_started", StepStartedData, "server", _log_step_started),
    EventKind(OUTPUT, OutputData, "server"),
    EventKind("host_reconnecting", HostReconnectingData, "server", _log_host_reconnecting),
    EventKind("host_reconnected", HostReconnectedData, "server",
              lambda data: f"reconnected after {data.get('attempts')} attempt(s)"),
    EventKind("step_finished", StepFinishedData, "server", _log_step_finished),
    EventKind("host_finished", HostFinishedData, "server", _log_finished,
              chat=_chat_host_failed),
    EventKind("job_recovered", JobRecoveredData, "job",
              lambda data: f"console restarted: resumed on {data.get('node')}"),
    EventKind("job_finished", JobFinishedData, "job", _log_finished,
              chat=_chat_job_finished),
    EventKind("events_pruned", EventsPrunedData, "job", _log_events_pruned),
    EventKind("wait_probe", WaitProbeData, "server", _log_wait_probe),
    EventKind("job_paused", JobPausedData, "job", _log_job_paused,
              gate_state="paused", manual_gate=True),
    EventKind("job_resumed", GateDecisionData, "job",
              lambda data: f"promoted by {data.get('by')}: batch {_batch_number(data)} starts",
              gate_state="promoted", manual_gate=True),
    EventKind("job_aborted", GateDecisionData, "job", _log_job_aborted,
              gate_state="aborted", manual_gate=True),
    EventKind("soak_started", SoakStartedData, "job", _log_soak_started,
              gate_state="soak_started"),
    EventKind("soak_finished", SoakFinishedData, "job", _log_soak_finished,
              gate_state="soak_finished"),
)}
EVENT_TYPES = tuple(CATALOGUE)

# The events that pause a job at a manual gate and end the pause (tasks.running.job_run).
GATE_EVENTS = tuple(kind.name for kind in CATALOGUE.values() if kind.manual_gate)
# Gate events and the state each leaves its gate in (job_resumed names the next batch;
# a soak_finished's state is soak_passed or soak_failed: tasks.events.resume).
GATE_STATES = {kind.name: kind.gate_state for kind in CATALOGUE.values()
               if kind.gate_state is not None}
# A rollout's decisions at a manual gate, as history rows show them ("promoted by alice").
GATE_DECISIONS = {name: GATE_STATES[name] for name in GATE_EVENTS}


@overload
def describe(event: dict[str, Any], form: Literal["log"] = "log") -> list[str]: ...


@overload
def describe(event: dict[str, Any], form: Literal["chat"], context: ChatContext) -> str: ...


def describe(event: dict[str, Any], form: str = "log",
             context: ChatContext | None = None) -> list[str] | str:
    """``event`` in the words of ``form``.

    ``log``: lines of the downloaded log, each ending in a newline: output lines read
    ``[<server> <stream>] <line>``, the others ``[<server>] …`` or ``[job] …``.
    ``chat``: one line (no newline) for a type whose ``chat`` form is set, said with
    ``context``."""
    if form == "chat":
        chat = CATALOGUE[event["type"]].chat
        if chat is None or context is None:
            raise ValueError(f"no chat line for {event['type']!r} events")
        return chat(event["data"], context)
    return _log_lines(event)


def _log_lines(event: dict[str, Any]) -> list[str]:
    kind, data = event["type"], event["data"]
    where = f"[{event['host']}" if event["host"] else "[job"
    if kind == OUTPUT:
        prefix = f"{where} {data.get('stream', 'stdout')}] "
        return [prefix + line + "\n" for line in data.get("lines") or []]
    entry = CATALOGUE.get(kind)
    text = entry.log(data) if entry is not None and entry.log is not None else kind
    return [f"{where}] {text}\n"]
