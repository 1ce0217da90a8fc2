"""bench/cpu_groups.py: the processes standing for operators' machines (the browser,
the watching clients) get a CPU cgroup of their own, and go back when it ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import cpu_groups, report


def _cgroup_of(pid: int) -> str:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return "\n".join(line for line in lines if ":cpu" in line or line.startswith("0::"))


def test_a_process_runs_in_the_group_and_comes_back_after():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = _cgroup_of(sleeper.pid)
        with cpu_groups.cpu_group("patchbay-test-group", [sleeper.pid], 4096) as how:
            inside = _cgroup_of(sleeper.pid)
            if cpu_groups._cpu_hierarchy() is None:  # noqa: SLF001 - no cgroups here
                assert how.startswith("shared as is")
                assert inside == before
            else:
                assert how == "a CPU cgroup of their own, 4× a process's share"
                assert "/patchbay-test-group" in inside
        assert _cgroup_of(sleeper.pid) == before
        assert not (cpu_groups.CGROUP_ROOT / "cpu" / "patchbay-test-group").exists()
        assert not (cpu_groups.CGROUP_ROOT / "patchbay-test-group").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_without_a_writable_cgroup_file_system_nothing_moves(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_groups, "CGROUP_ROOT", tmp_path)

    with cpu_groups.cpu_group("patchbay-test-group", [1], 4096) as how:
        assert how == "shared as is (no writable CPU cgroup here)"
    assert list(tmp_path.iterdir()) == []


def test_the_report_says_where_the_clients_ran():
    rows = [{"browser_cpu": "a CPU cgroup of their own, 64× a process's share"}]

    note = report._cpu_group_note("Chromium's processes", rows, "browser_cpu")  # noqa: SLF001

    assert note[1].startswith("Chromium's processes ran in a CPU cgroup of their own, "
                              "64× a process's share (bench/cpu_groups.py")
    assert report._cpu_group_note("x", [{}], "browser_cpu") == []  # noqa: SLF001
