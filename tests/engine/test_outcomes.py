"""Outcomes become event data key for key, in the order the event contract has always
had (docs/live-api.md): a client or a stored log sees the same bytes whichever part of
the run wrote them."""

from __future__ import annotations

from tasks.events.resume import HEALTH, STEPS, StepPosition
from tasks.running.outcomes import (
    HostEnding,
    HostOutcome,
    ServerInterrupted,
    ServerLost,
    StepFailed,
    StepOutcome,
)


def test_a_step_finished_carries_lost_and_signal_only_when_they_happened():
    plain = StepOutcome("ok", 0).finished_data("fetch", StepPosition(STEPS, 2), 1.5)
    stopped = StepOutcome("failed", None, "timed out after 1 s, stopped (TERM)", lost=True,
                          signal="TERM").finished_data("fetch", StepPosition(HEALTH, 0), 0)

    assert list(plain.items()) == [("step", "fetch"), ("index", 2), ("phase", "steps"),
                                   ("status", "ok"), ("exit_code", 0), ("duration", 1.5),
                                   ("reason", None)]
    assert list(stopped) == ["step", "index", "phase", "status", "exit_code", "duration",
                             "reason", "lost", "signal"]
    assert stopped["duration"] == 0 and type(stopped["duration"]) is int


def test_a_host_finished_has_the_keys_of_how_the_server_ended_in_their_order():
    facts = {"version": "1.2"}
    failed = StepFailed("failed", "deploy", 3, "exited", lost=False, signal=None,
                        on_failure="succeeded")

    assert list(HostOutcome(HostEnding("succeeded"), facts, "verified", 2.0).to_data()) == \
        ["status", "facts", "version_state", "duration"]
    assert list(HostOutcome(failed, facts, None, 2.0).to_data()) == \
        ["status", "failed_step", "exit_code", "reason", "on_failure", "facts", "duration"]
    assert list(HostOutcome(StepFailed("cancelled", "deploy", None, "x", lost=True,
                                       signal="TERM")).to_data()) == \
        ["status", "failed_step", "exit_code", "reason", "lost", "signal"]
    assert list(HostOutcome(HostEnding("failed", "refused", failed_step="connect"),
                            duration=0.1).to_data()) == \
        ["status", "failed_step", "reason", "duration"]
    assert list(HostOutcome(ServerLost("failed", "lost: ...", "deploy"), facts).to_data()) \
        == ["status", "reason", "lost", "failed_step", "facts"]
    assert list(HostOutcome(ServerInterrupted(None, "stopped"), version_state=None)
                .to_data().items()) == \
        [("status", "interrupted"), ("failed_step", None), ("reason", "stopped")]


def test_a_failure_read_back_from_the_log_is_the_same_outcome():
    stored = {"status": "failed", "failed_step": "deploy", "exit_code": 1,
              "reason": "exited with code 1", "lost": False, "on_failure": "failed"}

    assert StepFailed(**stored).to_data() == {
        key: value for key, value in stored.items() if key != "lost"}
