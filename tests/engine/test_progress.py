"""The light job:progress digest (services/progress.py): pure logic, a fake clock."""

from __future__ import annotations

from services.progress import LATEST_CHARS, ProgressDigest


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def output(seq: int, host: str, *lines: str) -> dict:
    return {"seq": seq, "ts": 1.0, "type": "output", "host": host,
            "data": {"stream": "stdout", "step": "s", "lines": list(lines), "offset": 9}}


def status(seq: int, kind: str, host: str | None = "a", **data) -> dict:
    return {"seq": seq, "ts": 1.0, "type": kind, "host": host, "data": data}


def test_output_never_travels_only_a_latest_line_at_most_once_per_interval():
    clock = Clock()
    digest = ProgressDigest(clock, interval=1.0)
    first = digest.digest(1, [status(1, "job_started", None), output(2, "a", "x", "y")])
    assert first.message == {"job_id": 1, "events": [status(1, "job_started", None)],
                             "latest": {"seq": 2, "host": "a", "stream": "stdout",
                                        "line": "y"}}
    clock.now += 0.25
    held = digest.digest(1, [output(3, "b", "z")])
    assert held.message is None and held.flush_in == 0.75
    again = digest.digest(1, [output(4, "b", "w")])
    assert (again.message, again.flush_in) == (None, None)  # one flush asked, not two
    clock.now += 0.75
    flushed = digest.flush(1)
    assert flushed.message == {"job_id": 1, "events": [],
                               "latest": {"seq": 4, "host": "b", "stream": "stdout",
                                          "line": "w"}}
    assert digest.flush(1).message is None  # nothing held any more


def test_a_status_event_carries_the_held_line_and_job_finished_forgets_the_job():
    clock = Clock()
    digest = ProgressDigest(clock, interval=1.0)
    digest.digest(1, [output(1, "a", "one")])
    clock.now += 0.1
    digest.digest(1, [output(2, "a", "two")])
    finished_host = status(3, "host_finished", status="succeeded")
    carried = digest.digest(1, [finished_host])
    assert carried.message["events"] == [finished_host]
    assert carried.message["latest"]["line"] == "two"
    end = digest.digest(1, [output(4, "a", "bye"), status(5, "job_finished", None,
                                                            status="succeeded")])
    assert end.message["latest"] is None and [e["seq"] for e in end.message["events"]] == [5]
    assert digest.tracked() == 0
    assert digest.flush(1).message is None


def test_probes_lose_their_output_and_long_lines_are_cut():
    digest = ProgressDigest(Clock())
    probe = status(1, "wait_probe", attempt=2, exit_code=0, output=["3 players"] * 20,
                   matched=False, remaining=5.0)
    message = digest.digest(7, [probe, output(2, "a", "", "x" * 5000)]).message
    assert message["events"][0]["data"] == {"attempt": 2, "exit_code": 0, "matched": False,
                                            "remaining": 5.0}
    assert probe["data"]["output"]  # the event log's own copy is untouched
    assert message["latest"]["line"] == "x" * LATEST_CHARS


def test_jobs_are_kept_apart():
    clock = Clock()
    digest = ProgressDigest(clock, interval=1.0)
    assert digest.digest(1, [output(1, "a", "one")]).message["latest"]["line"] == "one"
    assert digest.digest(2, [output(1, "a", "two")]).message["latest"]["line"] == "two"
    assert digest.digest(1, [output(2, "a", "three")]).message is None
