"""What the chaos run checks, per job, once every fault has stopped: pure functions
of the stored log, what each watcher holds and what each server printed.

- the job ended: a final status and ``job_finished`` as its last event;
- the stored log is gap-free: seqs 1, 2, ... with no hole;
- every watcher holds the stored log: keyed by seq, each stored event once and as
  stored (``lost``: stored seqs a watcher never got; ``dup``: seqs it got that mean
  something else than the stored event, or that the log does not have);
- every server's stdout in the log is exactly what the server printed (its copy of the
  step's lines) and what the runbook prints (``line 1`` ... ``line N``, ``counted``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUNNING = ("running", "paused")


def expected_lines(lines: int) -> list[str]:
    """What the chaos runbook prints on every server."""
    return [f"line {number}" for number in range(1, lines + 1)] + ["counted"]


def stdout_lines(stored: list[dict], host: str) -> list[str]:
    return [line for event in stored if event["type"] == "output"
            and event["host"] == host and event["data"]["stream"] == "stdout"
            for line in event["data"]["lines"]]


@dataclass
class JobCheck:
    """One job's findings; ``problems`` says in words what went wrong, for the report."""

    job_id: int
    status: str
    watchers: int = 0
    lost: int = 0
    dup: int = 0
    mismatched_hosts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status not in RUNNING and not any(
            problem.startswith("unfinished") for problem in self.problems)


def check_job(job_id: int, status: str, stored: list[dict], watchers: list[dict[int, dict]],
              printed: dict[str, list[str]], lines: int) -> JobCheck:
    """``watchers``: each watcher's events keyed by seq; ``printed``: each server of the
    job and the lines it printed (its own copy)."""
    check = JobCheck(job_id, status, watchers=len(watchers))
    seqs = [event["seq"] for event in stored]
    if status in RUNNING or not stored or stored[-1]["type"] != "job_finished":
        last = stored[-1]["type"] if stored else "nothing"
        check.problems.append(f"unfinished: status {status}, last event {last}")
    if seqs != list(range(1, len(seqs) + 1)):
        holes = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
        check.problems.append(f"stored log has holes at seq {holes[:10]}"
                              + (" (and seqs out of order or twice)" if not holes else ""))
        check.lost += len(holes) or 1
    by_seq = {event["seq"]: event for event in stored}
    for number, held in enumerate(watchers, start=1):
        missing = sorted(set(by_seq) - set(held))
        other = sorted(seq for seq, event in held.items() if by_seq.get(seq) != event)
        check.lost += len(missing)
        check.dup += len(other)
        if missing:
            check.problems.append(f"watcher {number} never got seq {_some(missing)}")
        if other:
            check.problems.append(f"watcher {number} got seq {_some(other)} other than "
                                  "stored")
    wanted = expected_lines(lines)
    for host, printed_lines in sorted(printed.items()):
        logged = stdout_lines(stored, host)
        if logged != printed_lines or logged != wanted:
            check.mismatched_hosts.append(host)
            check.problems.append(f"{host}: log has {len(logged)} stdout lines, the server "
                                  f"printed {len(printed_lines)}, the runbook prints "
                                  f"{len(wanted)}; first difference: "
                                  f"{_first_difference(logged, printed_lines, wanted)}")
    return check


def _some(seqs: list[int]) -> str:
    return ", ".join(map(str, seqs[:10])) + (f" (+{len(seqs) - 10} more)" if len(seqs) > 10
                                             else "")


def _first_difference(logged: list[str], printed: list[str], wanted: list[str]) -> str:
    for index in range(max(len(logged), len(printed), len(wanted))):
        row = [column[index] if index < len(column) else None
               for column in (logged, printed, wanted)]
        if len(set(row)) > 1:
            return f"line {index + 1}: log {row[0]!r}, printed {row[1]!r}, runbook {row[2]!r}"
    return "none"
