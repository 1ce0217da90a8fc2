"""``make chaos`` in its short mode: a whole cluster (PostgreSQL, Redis, two nodes,
nginx, an OpenSSH fleet) runs rollouts for 90 s while watchers drop, SSH sessions are
killed mid-step, a node is killed with -9, and Redis, PostgreSQL and nginx restart or
reload; then nothing may be lost, duplicated, mismatched or unfinished, and nothing
of the run may be left running. And the checker itself, on logs made to be wrong.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from stack import nginx as nginx_stack
from stack import postgres as postgres_stack
from stack import redis as redis_stack
from stack.chaos import leftover_processes, summary_line
from stack.chaos_check import check_job, expected_lines
from stack.chaos_inject import KINDS, RATES, schedule
from stack.chaos_rollouts import Rollouts
from tests.conftest import PROJECT, require_tool
from tests.support.sshd_fleet import sshd_available

SEED = 2212
SECONDS = 90
ZEROS = ("lost", "dup", "mismatched_hosts", "unfinished", "failed", "leftovers")


@pytest.mark.live
@pytest.mark.sshd
def test_a_short_chaos_run_loses_nothing_and_leaves_nothing_running():
    for available, what in [(postgres_stack.available(), "PostgreSQL (postgresql)"),
                            (redis_stack.available(), "Redis (redis-server)"),
                            (nginx_stack.available(), "nginx"),
                            (sshd_available(), "OpenSSH sshd")]:
        require_tool(available, what)

    done = subprocess.run([sys.executable, "-m", "stack.chaos"], cwd=PROJECT,
                          env={**os.environ, "CHAOS_SECONDS": str(SECONDS),
                               "CHAOS_SEED": str(SEED)},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=SECONDS + 480)

    output = done.stdout + done.stderr
    lines = done.stdout.splitlines()
    directory = Path(re.search(r"^chaos seed=\d+ seconds=\d+ dir=(\S+)$", lines[0]).group(1))
    assert lines[0].startswith(f"chaos seed={SEED} "), output
    summary = lines[-1]
    assert summary.startswith(f"chaos seed={SEED} jobs="), output[-6000:]
    figures = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", summary)}
    assert done.returncode == 0, output[-6000:]
    assert {key: figures[key] for key in ZEROS} == dict.fromkeys(ZEROS, 0), output[-6000:]
    # Four watchers a job; none for a job whose start answer a dying node never sent.
    assert figures["jobs"] >= 8 and figures["watchers"] >= 3 * figures["jobs"], summary
    assert figures["watcher_drops"] >= 500 * SECONDS // 600, summary
    assert figures["reconnects"] >= figures["watcher_drops"], summary
    for key in ("ssh_drops", "node_kills", "redis_restarts", "pg_restarts",
                "nginx_reloads", "ssh_reattaches"):
        assert figures[key] >= 1, (key, summary)
    assert leftover_processes(directory) == []
    assert not directory.exists()
    for address, port in _ports(done.stdout):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, port))  # nothing listens there any more


def _ports(output: str) -> list[tuple[str, int]]:
    """Every address and port the run said it used."""
    line = next(line for line in output.splitlines() if line.startswith("chaos: nginx on"))
    nginx = int(re.search(r"http://127\.0\.0\.1:(\d+);", line).group(1))
    nodes = [int(port) for port in re.search(r"nodes on ports ([\d, ]+);", line)
             .group(1).split(", ")]
    services = [int(re.search(rf"{name} on port (\d+)", line).group(1))
                for name in ("PostgreSQL", "Redis")]
    first, last, ssh = re.search(r"fleet SSH on 127\.0\.0\.(\d+)-(\d+) port (\d+)",
                                 line).groups()
    return ([("127.0.0.1", port) for port in (nginx, *nodes, *services)]
            + [(f"127.0.0.{octet}", int(ssh)) for octet in range(int(first), int(last) + 1)])


def test_a_bad_chaos_setting_is_refused_before_anything_starts():
    done = subprocess.run([sys.executable, "-m", "stack.chaos"], cwd=PROJECT,
                          env={**os.environ, "CHAOS_SECONDS": "ten"},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "make chaos: CHAOS_SECONDS must be a whole number, not 'ten'"
    assert done.stdout == ""


# -- the parts, as pure logic ---------------------------------------------------------------


def test_the_schedule_is_the_seeds_and_has_every_fault_at_its_rate():
    first = schedule(random.Random(SEED), 600)
    again = schedule(random.Random(SEED), 600)
    kinds = [kind for _, kind in first]

    assert first == again
    assert first == sorted(first) and all(0 < moment < 600 for moment, _ in first)
    assert {kind: kinds.count(kind) for kind in KINDS} == \
        {kind: max(1, round(rate * 600)) for kind, rate in RATES.items()}
    assert kinds.count("watcher_drop") >= 500
    assert {kind for _, kind in schedule(random.Random(SEED), 10)} == set(KINDS)


def _log(host_lines: list[str]) -> list[dict]:
    events = [{"seq": 1, "ts": 1.0, "type": "job_started", "host": None, "data": {}}]
    for line in host_lines:
        events.append({"seq": len(events) + 1, "ts": 2.0, "type": "output", "host": "c01",
                       "data": {"stream": "stdout", "lines": [line]}})
    events.append({"seq": len(events) + 1, "ts": 3.0, "type": "job_finished", "host": None,
                   "data": {"status": "succeeded"}})
    return events


def test_the_checker_passes_a_whole_log_and_names_each_kind_of_loss():
    good = _log(expected_lines(3))
    printed = {"c01": expected_lines(3)}
    whole = {event["seq"]: event for event in good}

    passed = check_job(7, "succeeded", good, [whole, dict(whole)], printed, 3)
    missed = check_job(7, "succeeded", good, [{s: e for s, e in whole.items() if s != 3}],
                       printed, 3)
    changed = check_job(7, "succeeded", good,
                        [{**whole, 2: {**whole[2], "data": {"stream": "stdout",
                                                            "lines": ["x"]}}}], printed, 3)
    twice = check_job(7, "succeeded", _log(["line 1", "line 2", "line 2", "line 3",
                                            "counted"]), [], printed, 3)
    holed = check_job(7, "succeeded", [e for e in good if e["seq"] != 2], [], printed, 3)
    running = check_job(7, "running", good[:-1], [], printed, 3)

    assert (passed.lost, passed.dup, passed.mismatched_hosts, passed.problems) == \
        (0, 0, [], [])
    assert (missed.lost, missed.problems) == (1, ["watcher 1 never got seq 3"])
    assert (changed.dup, changed.problems) == (1, ["watcher 1 got seq 2 other than stored"])
    assert twice.mismatched_hosts == ["c01"]
    assert "first difference: line 3: log 'line 2'" in twice.problems[0]
    assert holed.lost == 1 and "holes at seq [2]" in holed.problems[0]
    assert not running.finished and passed.finished


def test_the_summary_line_has_the_issues_keys_in_order():
    line = summary_line(5, {"jobs": 3, "watchers": 12, "lost": 0})
    assert line.startswith("chaos seed=5 jobs=3 watchers=12 reconnects=0 ssh_drops=0 "
                           "node_kills=0 redis_restarts=0 pg_restarts=0 lost=0 dup=0 "
                           "mismatched_hosts=0 unfinished=0 ")


class _LostThenRefusedThenStarted:
    """A node that made job 19 but lost its answer, refused the retry while job 19
    held the servers, then started job 23: what CI once met under load."""

    def __init__(self):
        self.tags: list[str] = []

    def post(self, url, json, timeout):
        self.tags.append(json["params"]["tag"])
        if len(self.tags) == 1:
            raise requests.Timeout("the answer was lost")
        if len(self.tags) == 2:
            return _Answer(409, {})
        return _Answer(201, {"job_id": 23})


class _Answer:
    def __init__(self, status_code, body):
        self.status_code, self._body = status_code, body

    def json(self):
        return self._body


def test_a_retried_start_has_a_tag_of_its_own_so_two_jobs_never_share_a_copy():
    node = _LostThenRefusedThenStarted()
    rollouts = Rollouts(proxy_url="http://proxy", node_urls=lambda: ["http://node"],
                        http=node, engine=None, groups=[], lines=3, seed=SEED)
    rollouts.stop.wait = lambda seconds: False  # no pause between attempts

    job_id, tag = rollouts._start_job(random.Random(1), "s2212g1j3", ["c05"])

    assert (job_id, tag) == (23, "s2212g1j3a3")
    assert node.tags == ["s2212g1j3a1", "s2212g1j3a2", "s2212g1j3a3"]
