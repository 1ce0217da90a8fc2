"""The event catalogue (tasks.events.catalogue): the downloaded log's words for every
type, the gate sets, and its agreement with docs/live-api.md and the CLI's own copy."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from patchbay_cli import story as cli_output
from tasks.events.catalogue import (
    CATALOGUE,
    EVENT_TYPES,
    GATE_DECISIONS,
    GATE_EVENTS,
    GATE_STATES,
    describe,
)
from tasks.events.chat_words import ChatContext
from tasks.events.event_shapes import WaitSpec

LIVE_API = Path(__file__).resolve().parents[2] / "docs" / "live-api.md"

S, J = "gs-01", None  # an event of a server, and one of the job (host null)
WAIT = {"until": "^0$", "every": 2, "timeout": 30, "on_timeout": "fail"}

# What the downloaded log said for each case before the catalogue (blueprints.pages.
# downloads.log_lines as it was): byte for byte the same.
LOG_CASES = [
    ("job_started", J, {"runbook": "game-update", "servers": ["gs-01", "gs-02"]},
     ["[job] started: game-update on 2 server(s)\n"]),
    ("batch_started", J, {"batch": 1, "servers": ["gs-01", "gs-02"]},
     ["[job] batch 2: gs-01, gs-02\n"]),
    ("host_started", S, {"address": "10.0.0.1:22"}, ["[gs-01] connecting to 10.0.0.1:22\n"]),
    ("step_started", S, {"step": "deploy", "phase": "steps"}, ["[gs-01] step deploy started\n"]),
    ("step_started", S, {"step": "restore", "phase": "on_failure"},
     ["[gs-01] step restore started (on failure)\n"]),
    ("step_started", S, {"step": "health", "phase": "health"},
     ["[gs-01] step health started (soak health check)\n"]),
    ("step_started", S, {"step": "version", "phase": "probe"},
     ["[gs-01] step version started (no step reported the build)\n"]),
    ("step_started", S, {"step": "ready", "phase": "steps", "wait": WAIT},
     ["[gs-01] step ready started: waiting for ^0$ every 2 s, up to 30 s, then fail\n"]),
    ("output", S, {"stream": "stdout", "lines": ["one", "two"]},
     ["[gs-01 stdout] one\n", "[gs-01 stdout] two\n"]),
    ("output", S, {"stream": "stderr", "lines": ["[oops]"]}, ["[gs-01 stderr] [oops]\n"]),
    ("output", S, {"lines": []}, []),
    ("wait_probe", S, {"step": "ready", "attempt": 2, "exit_code": 1, "matched": False,
                       "remaining": 26.0, "output": ["a", "1"]},
     ["[gs-01] probe 2 of ready: exit code 1, no match, 26.0 s left: 1\n"]),
    ("wait_probe", S, {"step": "ready", "attempt": 3, "exit_code": 0, "matched": True,
                       "remaining": 24.5, "output": []},
     ["[gs-01] probe 3 of ready: exit code 0, matched, 24.5 s left\n"]),
    ("host_reconnecting", S, {"reason": "connection reset", "timeout": 120},
     ["[gs-01] connection lost (connection reset); reconnecting for up to 120 s\n"]),
    ("host_reconnected", S, {"attempts": 3}, ["[gs-01] reconnected after 3 attempt(s)\n"]),
    ("step_finished", S, {"step": "deploy", "status": "ok", "exit_code": 0, "duration": 1.25},
     ["[gs-01] step deploy: ok, exit code 0, 1.25 s\n"]),
    ("step_finished", S, {"step": "deploy", "status": "failed", "exit_code": None,
                          "duration": 30, "reason": "timed out after 30 s, stopped (TERM)"},
     ["[gs-01] step deploy: failed, 30 s, timed out after 30 s, stopped (TERM)\n"]),
    ("step_finished", S, {"step": "deploy", "status": "ok"}, ["[gs-01] step deploy: ok\n"]),
    ("host_finished", S, {"status": "failed", "exit_code": 2, "duration": 3.5,
                          "reason": "step deploy failed"},
     ["[gs-01] finished: failed, exit code 2, 3.5 s, step deploy failed\n"]),
    ("job_recovered", J, {"node": "node-b", "servers": ["gs-01"], "reason": "restarted"},
     ["[job] console restarted: resumed on node-b\n"]),
    ("job_paused", J, {"batch": 0, "reason": "gate", "next_batch": 1},
     ["[job] paused after batch 1: waiting at the gate for an operator to promote or abort\n"]),
    ("job_resumed", J, {"by": "alice", "batch": 1}, ["[job] promoted by alice: batch 2 starts\n"]),
    ("job_aborted", J, {"by": "bob", "batch": 0},
     ["[job] aborted at the gate by bob after batch 1\n"]),
    ("job_aborted", J, {"by": "bob", "batch": None},
     ["[job] aborted at the gate by bob after batch 1\n"]),
    ("soak_started", J, {"batch": 0, "seconds": 60, "until": 1795607980.0},
     ["[job] soaking batch 1 for 60 s, then its health checks again\n"]),
    ("soak_finished", J, {"batch": 0, "passed": True, "failed": []},
     ["[job] batch 1 passed its health checks after the soak\n"]),
    ("soak_finished", J, {"batch": 1, "passed": False, "failed": ["gs-03", "gs-04"]},
     ["[job] batch 2 failed its health check after the soak (gs-03, gs-04)\n"]),
    ("soak_finished", J, {"batch": 0, "passed": False, "failed": ["gs-01"],
                          "reason": "the canary failed its health check after a 60 s soak"},
     ["[job] the canary failed its health check after a 60 s soak\n"]),
    ("job_finished", J, {"status": "failed", "counts": {"succeeded": 1, "failed": 1},
                         "duration": 4.5, "reason": "stopped after 1 failure"},
     ["[job] finished: failed, 4.5 s, stopped after 1 failure (1 succeeded, 1 failed)\n"]),
    ("events_pruned", J, {"days": 30, "events": 1200, "pruned_at": "2026-12-01T00:00:00Z"},
     ["[job] events pruned after 30 days (1200 events removed)\n"]),
    ("a_type_from_the_future", S, {"anything": 1}, ["[gs-01] a_type_from_the_future\n"]),
]


@pytest.mark.parametrize(("kind", "host", "data", "lines"), LOG_CASES)
def test_describe_words_each_event_as_the_downloaded_log_did(kind, host, data, lines):
    assert describe({"type": kind, "host": host, "data": data}) == lines


def test_every_type_has_a_log_case_and_a_shape():
    assert {case[0] for case in LOG_CASES} >= set(EVENT_TYPES)
    for kind in CATALOGUE.values():
        assert typing.is_typeddict(kind.shape), kind.name
        assert kind.about in ("job", "server")


def test_the_gate_sets():
    assert GATE_EVENTS == ("job_paused", "job_resumed", "job_aborted")
    assert GATE_STATES == {"job_paused": "paused", "job_resumed": "promoted",
                           "job_aborted": "aborted", "soak_started": "soak_started",
                           "soak_finished": "soak_finished"}
    assert GATE_DECISIONS == {"job_paused": "paused", "job_resumed": "promoted",
                              "job_aborted": "aborted"}
    assert all(CATALOGUE[name].about == "job" for name in GATE_STATES)


def test_the_cli_s_copy_of_the_types_agrees_with_the_catalogue():
    assert cli_output.EVENT_TYPES == EVENT_TYPES
    assert tuple(GATE_STATES) == cli_output.GATE_EVENTS
    assert not cli_output.UNSAID_EVENTS - set(EVENT_TYPES)
    assert not cli_output.LOUD_EVENTS - set(EVENT_TYPES)


def test_the_cli_says_a_sentence_for_every_type_it_does_not_leave_unsaid():
    story = cli_output.JobStory(12)
    story.describe({"type": "job_started", "host": None,
                    "data": {"runbook": "game-update", "servers": ["gs-01", "gs-02"],
                             "batches": [["gs-01"], ["gs-02"]], "steps": ["deploy"]}})
    first_cases = {case[0]: case for case in reversed(LOG_CASES)}.values()
    said = {kind for kind, host, data, _ in first_cases
            if story.describe({"type": kind, "host": host, "data": data}) is not None}
    assert said == set(EVENT_TYPES) - cli_output.UNSAID_EVENTS


def _documented_types() -> dict[str, list[dict[str, str]]]:
    """docs/live-api.md's event tables (``| type | data |`` and ``| type | host | data
    |``): each type's rows, as {column: text}; ``step_started of a wait step`` is a row
    of step_started."""
    rows: dict[str, list[dict[str, str]]] = {}
    header: list[str] | None = None
    for line in LIVE_API.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            header = None
        elif cells[0] == "type" and cells[-1] == "data":
            header = cells
        elif header is not None and not set(line) <= set("|-"):
            name = re.match(r"`([a-z_]+)`", cells[0])
            assert name, line
            rows.setdefault(name.group(1), []).append(dict(zip(header, cells, strict=True)))
    return rows


def _documented_fields(text: str) -> set[str]:
    """The names a doc row quotes: `` `name` ``, `` `name: true` ``, `` `name` (…) ``."""
    return {match.group(1) for match in re.finditer(r"`([a-z_]+)(?=[`:])", text)}


def test_the_doc_s_event_tables_list_the_catalogue_s_types():
    assert set(_documented_types()) == set(EVENT_TYPES)


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_the_doc_names_every_field_of_each_type_s_data(name):
    rows = _documented_types()[name]
    documented = set().union(*(_documented_fields(row["data"]) for row in rows))
    fields = set(CATALOGUE[name].shape.__annotations__)
    if "wait" in fields:
        fields |= set(WaitSpec.__annotations__)
    assert fields - documented == set()
    hosts = {row["host"] for row in rows if "host" in row and " of " not in row["type"]}
    assert hosts <= {"null" if CATALOGUE[name].about == "job" else "the server"}


def _chat(title: str = "Job #7 (game-update)", host: dict | None = None) -> ChatContext:
    return ChatContext(title=title, created_by="alice", job_status="running", host=host,
                       quote=lambda text: str(text).replace("<", "&lt;"))


CHAT_CASES = [
    ("job_started", {"servers": ["gs-01", "gs-02"]}, _chat(),
     ":rocket: Job #7 (game-update) started on 2 server(s) by alice"),
    ("host_finished", {"status": "failed"},
     _chat(host={"name": "gs-<1>", "failed_step": "deploy", "exit_code": 2, "reason": "x"}),
     ":x: Job #7 (game-update): server gs-&lt;1> failed at step deploy (exit 2): x"),
    ("job_finished", {"status": "failed", "counts": {"succeeded": 3, "failed": 1},
                      "reason": "r" * 400},
     _chat(), ":x: Job #7 (game-update) finished: failed (1 failed, 3 succeeded): " + "r" * 300),
    ("job_finished", {}, _chat(), ":warning: Job #7 (game-update) finished: running"),
]


@pytest.mark.parametrize(("kind", "data", "context", "line"), CHAT_CASES)
def test_the_chat_form_says_one_line_with_the_destination_s_quoting(kind, data, context, line):
    assert describe({"type": kind, "host": None, "data": data}, "chat", context) == line


def test_only_the_types_a_chat_webhook_posts_have_a_chat_form():
    assert {kind.name for kind in CATALOGUE.values() if kind.chat is not None} == {
        "job_started", "host_finished", "job_finished"}
    with pytest.raises(ValueError, match="no chat line"):
        describe({"type": "job_paused", "host": None, "data": {}}, "chat", _chat())
