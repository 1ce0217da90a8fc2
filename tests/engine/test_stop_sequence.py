"""The stop sequence of a step (tasks.transport.stop_sequence) on a clock of its own."""

from __future__ import annotations

from tasks.transport.protocol import TransportError
from tasks.transport.stop_sequence import StopSequence


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Control:
    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason

    def stop_reason(self) -> str | None:
        return self.reason

    def tick(self) -> None:
        return None


def sequence(clock: Clock, sent: list[str], reaches: bool = True) -> StopSequence:
    def send(signal_name: str) -> bool:
        sent.append(signal_name)
        return reaches
    return StopSequence(send, grace=5, clock=clock, sleep=clock.sleep)


def test_term_then_kill_after_the_grace_then_give_up_after_twice_the_grace():
    clock, sent, control = Clock(), [], Control()
    stop = sequence(clock, sent)
    assert not stop.check(control) and sent == []
    control.reason = "cancel"
    assert not stop.check(control)
    assert (sent, stop.reason, stop.signal) == (["TERM"], "cancel", "TERM")
    clock.now += 4.9
    assert not stop.check(control) and sent == ["TERM"]
    clock.now += 0.1
    assert not stop.check(control)
    assert (sent, stop.signal, stop.killed) == (["TERM", "KILL"], "KILL", True)
    clock.now += 4.9
    assert not stop.check(control)
    clock.now += 0.1
    assert stop.check(control)
    assert sent == ["TERM", "KILL"]


def test_a_signal_that_does_not_reach_the_step_is_not_the_last_signal():
    clock, sent = Clock(), []
    stop = sequence(clock, sent, reaches=False)
    stop.check(Control("timeout"))
    assert (sent, stop.signal) == (["TERM"], None)


def test_finish_kills_a_group_that_outlives_term_once_the_grace_is_over():
    clock, sent = Clock(), []
    stop = sequence(clock, sent)
    stop.check(Control("cancel"))
    looks: list[float] = []

    def running() -> bool:
        looks.append(clock.now)
        return True

    stop.finish(running)
    assert sent == ["TERM", "KILL"] and stop.signal == "KILL"
    assert looks[0] == 100.0 and looks[-1] >= 105.0


def test_finish_does_nothing_without_a_stop_or_after_kill_and_stops_when_the_group_ends():
    clock, sent = Clock(), []
    stop = sequence(clock, sent)
    stop.finish(lambda: 1 / 0)  # never asked to stop: never looks
    stop.check(Control("cancel"))
    stop.finish(lambda: False)
    assert sent == ["TERM"]

    def connection_gone() -> bool:
        raise TransportError("connection lost")

    stop.finish(connection_gone)
    assert sent == ["TERM"]
