"""The event catalogue: every type of event a job's log holds, described once.

For each type: the shape of its ``data`` (:mod:`tasks.events.event_shapes`), whether it
is about the job or one server, and the part it plays at a gate. :func:`describe` words
an event for a destination, by the table's form for it (:mod:`tasks.events.log_words`,
:mod:`tasks.events.chat_words`): ``log``, the downloaded log's lines; ``chat``, the one
line a chat webhook posts (services.webhooks.payloads.slack) for the types it posts.

docs/live-api.md's event tables are the public contract: tests/engine/test_event_catalogue.py
checks this module against them, and against the CLI's own copy of the types
(``patchbay_cli.story``, which imports nothing of the app). Clients ignore types they do
not know, so a new type is added here, in the doc and in the CLI together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

from tasks.events import chat_words, log_words
from tasks.events.chat_words import ChatContext, ChatText
from tasks.events.event_shapes import (
    BatchStartedData,
    EventsPrunedData,
    GateDecisionData,
    HostFinishedData,
    HostReconnectedData,
    HostReconnectingData,
    HostStartedData,
    JobFinishedData,
    JobPausedData,
    JobRecoveredData,
    JobStartedData,
    OutputData,
    SoakFinishedData,
    SoakStartedData,
    StepFinishedData,
    StepStartedData,
    WaitProbeData,
)
from tasks.events.log_words import LogText, batch_number


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
    EventKind("job_started", JobStartedData, "job", log_words.job_started,
              chat=chat_words.job_started),
    EventKind("batch_started", BatchStartedData, "job", log_words.batch_started),
    EventKind("host_started", HostStartedData, "server",
              lambda data: f"connecting to {data.get('address')}"),
    EventKind("step_started", StepStartedData, "server", log_words.step_started),
    EventKind(OUTPUT, OutputData, "server"),
    EventKind("host_reconnecting", HostReconnectingData, "server", log_words.host_reconnecting),
    EventKind("host_reconnected", HostReconnectedData, "server",
              lambda data: f"reconnected after {data.get('attempts')} attempt(s)"),
    EventKind("step_finished", StepFinishedData, "server", log_words.step_finished),
    EventKind("host_finished", HostFinishedData, "server", log_words.finished,
              chat=chat_words.host_failed),
    EventKind("job_recovered", JobRecoveredData, "job",
              lambda data: f"console restarted: resumed on {data.get('node')}"),
    EventKind("job_finished", JobFinishedData, "job", log_words.finished,
              chat=chat_words.job_finished),
    EventKind("events_pruned", EventsPrunedData, "job", log_words.events_pruned),
    EventKind("wait_probe", WaitProbeData, "server", log_words.wait_probe),
    EventKind("job_paused", JobPausedData, "job", log_words.job_paused,
              gate_state="paused", manual_gate=True),
    EventKind("job_resumed", GateDecisionData, "job",
              lambda data: f"promoted by {data.get('by')}: batch {batch_number(data)} starts",
              gate_state="promoted", manual_gate=True),
    EventKind("job_aborted", GateDecisionData, "job", log_words.job_aborted,
              gate_state="aborted", manual_gate=True),
    EventKind("soak_started", SoakStartedData, "job", log_words.soak_started,
              gate_state="soak_started"),
    EventKind("soak_finished", SoakFinishedData, "job", log_words.soak_finished,
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
