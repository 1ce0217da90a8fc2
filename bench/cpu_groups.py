"""CPU cgroups for the processes that stand for operators' machines (root only;
cgroup v2 or v1).

The browser scenario runs Chromium, Patchbay's server and a fleet of 1,000 sshd
sessions on the same two cores. sshd starts each SSH session in a session of its own,
and Linux's autogroup scheduling gives every session an equal share of the CPU, so the
tab's main thread waits behind hundreds of busy sshd sessions: traced, tasks of 1 to 40
ms of the page's own CPU took 130 to 255 ms. An operator's browser, and a watcher's
client, runs on a machine of its own; :func:`operators` gives those processes a CPU
group of their own with a large share, so they run when they have work, as they would
there. The fleet and Patchbay's server are left as they are: the job runs at the same
speed and the server meets the same competition.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_SHARES = 1024  # cgroup v1's cpu.shares of a normal process (v2: cpu.weight 100)
OPERATORS = "patchbay-bench-operators"
# 64 processes' share: whenever they have work, they get a core (BENCH_OPERATOR_SHARES
# changes it; 0 leaves them sharing the CPU as is, to compare).
OPERATOR_SHARES = int(os.environ.get("BENCH_OPERATOR_SHARES", "65536"))


def _cpu_hierarchy() -> Path | None:
    """cgroup v2's unified hierarchy (with the ``cpu`` controller on) or v1's ``cpu``
    hierarchy; None when neither is writable here (not root, or no cgroup file
    system)."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists():
        if "cpu" not in controllers.read_text().split():
            return None
        subtree = CGROUP_ROOT / "cgroup.subtree_control"
        if "cpu" not in subtree.read_text().split():
            try:
                subtree.write_text("+cpu")
            except OSError:
                return None
        return CGROUP_ROOT
    if (CGROUP_ROOT / "cpu" / "cgroup.procs").exists():
        return CGROUP_ROOT / "cpu"
    return None


def _set_share(group: Path, v2: bool, shares: int) -> None:
    if v2:
        (group / "cpu.weight").write_text(str(max(1, min(10_000, shares * 100 // 1024))))
    else:
        (group / "cpu.shares").write_text(str(max(2, shares)))


def _move(pids: list[int], group: Path, strict: bool = True) -> None:
    """Move ``pids`` into ``group``; one that ended meanwhile is skipped, and with
    ``strict`` off so is one that cannot move (a process being reaped)."""
    for pid in pids:
        try:
            (group / "cgroup.procs").write_text(str(pid))
        except ProcessLookupError:
            continue
        except OSError:
            if strict:
                raise


@contextmanager
def cpu_group(name: str, pids: list[int], shares: int) -> Iterator[str]:
    """Run ``pids`` (and what they start from now on) in the CPU cgroup ``name`` with
    ``shares`` (1024: one normal process's share). Yields what was done, for the
    report: when no cgroup can be made here, nothing is moved and it says so. On exit
    every process still in the group goes back to the root group."""
    base = _cpu_hierarchy()
    if base is None:
        yield "shared as is (no writable CPU cgroup here)"
        return
    group = base / name
    try:
        group.mkdir(exist_ok=True)
        _set_share(group, base == CGROUP_ROOT, shares)
        _move(pids, group)
    except OSError as exc:
        yield f"shared as is (cgroup {name}: {exc.strerror})"
        return
    try:
        yield f"a CPU cgroup of their own, {shares / DEFAULT_SHARES:g}× a process's share"
    finally:
        with suppress(OSError):  # a process still ending keeps the group: reused next run
            _move([int(pid) for pid in (group / "cgroup.procs").read_text().split()], base,
                  strict=False)
            group.rmdir()


def operators(pids: list[int]) -> AbstractContextManager[str]:
    """:func:`cpu_group` for the browser's or the watching clients' processes."""
    if OPERATOR_SHARES <= 0:
        return _as_is()
    return cpu_group(OPERATORS, pids, OPERATOR_SHARES)


@contextmanager
def _as_is() -> Iterator[str]:
    yield "shared as is (BENCH_OPERATOR_SHARES=0)"
