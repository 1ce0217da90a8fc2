"""The benchmark harness's own logic, without a fleet: results files named after the mode,
what each mode prints and publishes, the comparison with the published full run, and the
busy-machine rule (bench/runs.py, bench/report.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bench import report, runs

PROSE_BEFORE = "# Benchmarks\n\nHand-written prose.\n\n"
PROSE_AFTER = "\n\n## Where the time goes\n\nMore prose.\n"
OLD_SECTION = "Run of long ago: the tables that predate full.json."


def machine() -> dict:
    return {"cpus": 2, "memory_gb": 23.5, "cpu_model": "AMD EPYC", "python": "3.11.7",
            "kernel": "6.18", "sshd": "OpenSSH_9.2"}


def fanout_rows(hosts: int, patchbay_wall: float) -> list[dict]:
    def row(tool: str, wall: float, cpu: float) -> dict:
        return {"tool": tool, "hosts": hosts, "wall_s": wall, "cpu_s": cpu,
                "cpu_ms_per_host": round(cpu / hosts * 1000, 2), "failures": 0,
                "rounds": [[wall, cpu]]}

    return [row("patchbay", patchbay_wall, 1.0), row("floor", 2.0, 1.0),
            row("pssh", 3.0, 1.5)]


def chatty_row(hosts: int, lines_per_s: int) -> dict:
    return {"hosts": hosts, "lines_per_host": 20_000, "lines": hosts * 20_000,
            "complete": True, "seconds": 1.0, "lines_per_s": lines_per_s,
            "streaming_lines_per_s": lines_per_s, "output_events": 400, "server_cpu_s": 0.7,
            "rss_before_mb": 115.0, "rss_after_mb": 130.0, "rss_peak_mb": 140.0}


def latency_row(hosts: int, ticks: int, p95: float) -> dict:
    return {"hosts": hosts, "ticks": ticks, "lines": hosts * ticks, "p50_ms": 56.0,
            "p95_ms": p95, "p99_ms": 120.0, "max_ms": 140.0, "mean_ms": 60.0,
            "complete": True, "server_cpu_s": 1.0, "server_cpu_percent": 30.0,
            "client_cpu_percent": 10.0}


def browser_row(hosts: int, reload_ms: int, longest: int, over: int) -> dict:
    return {"hosts": hosts, "lines_per_host": 1000, "lines": hosts * 1000, "last_seq": 99,
            "live_seconds": 6.6, "live_longtasks": 14, "live_longtasks_over_200ms": over,
            "live_longtask_max_ms": longest, "live_longtask_total_ms": 2155,
            "live_heap_peak_mb": 9.7, "live_heap_end_mb": 9.0, "live_script_s": 0.2,
            "live_task_s": 3.6, "live_nodes": 15353, "reload_rows_ms": 235,
            "reload_first_event_ms": 722, "reload_hosts_ms": reload_ms,
            "reload_applied_ms": reload_ms, "reload_longtask_max_ms": 106,
            "scroll_log_frames": 200, "scroll_log_p50_ms": 16.7, "scroll_log_p95_ms": 33.3,
            "scroll_log_max_ms": 50.1, "scroll_page_frames": 200, "scroll_page_p50_ms": 16.7,
            "scroll_page_p95_ms": 66.7, "scroll_page_max_ms": 80.0, "heap_peak_mb": 16.7,
            "heap_after_mb": 16.7, "heap_after_gc_mb": 9.0,
            "heap_series": [[0.1, "live", 5.0], [3.0, "reload", 9.0], [5.0, "scroll", 16.7]]}


def results(mode: str, scenarios: dict, **extra) -> dict:
    return {"started": "2026-12-02T05:20:31+00:00", "mode": mode, "machine": machine(),
            "scenarios": scenarios, "background": {name: 0.5 for name in scenarios},
            "busy": {}, "partial": False, "seconds": 27.0, **extra}


def quick_run() -> dict:
    return results("quick", {
        "fanout": fanout_rows(50, 2.2),
        "chatty": [chatty_row(10, 90_000)],
        "latency": [latency_row(10, 100, 110.0)],
        "browser": [browser_row(200, 1344, 741, 2)],
    })


def full_run(**extra) -> dict:
    return results("full", {
        "fanout": fanout_rows(50, 2.0) + fanout_rows(1000, 40.0),
        "chatty": [chatty_row(10, 200_000), chatty_row(100, 250_000)],
        "latency": [latency_row(10, 200, 100.0)],
        "browser": [browser_row(1000, 2500, 900, 5)],
    }, **extra)


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docs/benchmarks.md, its plots and published figures, in a temporary directory
    (no plots drawn: matplotlib is not needed here)."""
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    doc.write_text(f"{PROSE_BEFORE}{report.BEGIN}\n{OLD_SECTION}\n{report.END}{PROSE_AFTER}")
    monkeypatch.setattr(report, "DOC", doc)
    monkeypatch.setattr(report, "PLOTS", tmp_path / "docs" / "benchmarks")
    monkeypatch.setattr(report, "PUBLISHED", tmp_path / "docs" / "benchmarks" / "full.json")
    monkeypatch.setattr(report, "draw_plots", lambda scenarios: [])
    return doc


def finish(run: dict, tmp_path: Path, refusal: str | None = None) -> tuple[list, str, str]:
    logged: list[str] = []
    printed: list[str] = []
    written = runs.finish(run, refusal=refusal, log=logged.append, out=printed.append,
                          directory=tmp_path / "results")
    return written, "\n".join(logged), "\n".join(printed)


# -- results files -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["quick", "full", "smoke"])
def test_each_run_writes_a_results_file_named_after_its_mode(tmp_path, mode):
    run = results(mode, {"chatty": [chatty_row(10, 200_000)]})
    paths = runs.save(run, tmp_path)
    assert [p.name for p in paths] == [f"{mode}.json", f"{mode}-20261202-052031.json"]
    assert json.loads(paths[0].read_text()) == run == json.loads(paths[1].read_text())

    later = {**run, "started": "2026-12-02T06:00:00+00:00"}
    runs.save(later, tmp_path)
    assert json.loads((tmp_path / f"{mode}.json").read_text())["started"] == later["started"]
    assert len(list(tmp_path.glob(f"{mode}-*.json"))) == 2


def test_only_a_full_run_at_full_sizes_writes_the_docs():
    assert runs.docs_refusal("full", sizes_given=False, no_docs=False) is None
    assert "never writes" in runs.docs_refusal("quick", sizes_given=False, no_docs=False)
    assert "never writes" in runs.docs_refusal("smoke", sizes_given=False, no_docs=False)
    assert runs.docs_refusal("full", sizes_given=False, no_docs=True) == "--no-docs"
    assert "--sizes" in runs.docs_refusal("full", sizes_given=True, no_docs=False)


# -- quick mode: prints, compares, never writes the docs --------------------------------------

def test_a_quick_run_prints_its_tables_and_says_no_full_run_is_published_yet(docs, tmp_path):
    before = docs.read_text()
    written, logged, printed = finish(quick_run(), tmp_path,
                                      runs.docs_refusal("quick", sizes_given=False,
                                                        no_docs=False))

    assert docs.read_text() == before
    assert not report.PUBLISHED.exists()
    assert {p.name for p in written} == {"quick.json", "quick-20261202-052031.json",
                                         "quick.md"}
    assert "### Targets" in printed and "### 1. Fan-out" in printed
    assert "### 6. Browser" in printed
    assert "![" not in printed  # the tables, not the plots
    assert "No published full-run figures exist yet" in printed
    assert "make bench-full" in printed
    assert (tmp_path / "results" / "quick.md").read_text() == printed
    assert "docs/benchmarks.md not written" in logged


def test_a_quick_run_is_compared_with_the_published_full_run(docs, tmp_path):
    report.PUBLISHED.parent.mkdir(parents=True)
    report.PUBLISHED.write_text(json.dumps(full_run()))
    before = docs.read_text()
    _, _, printed = finish(quick_run(), tmp_path, "quick")
    assert docs.read_text() == before

    comparison = printed.split("### Compared with the published full run", 1)[1]
    table = [line for line in comparison.splitlines() if line.startswith("| ")]
    # fan-out at 50 hosts, per tool: this run, the published figure, the change
    assert "| fanout | 50 hosts, Patchbay | wall s | 2.2 | 2.0 | +10.0% |" in table
    assert "| fanout | 50 hosts, parallel-ssh | CPU s | 1.5 | 1.5 | +0.0% |" in table
    assert "| chatty | 10 × 20,000 | lines/s | 90,000 | 200,000 | -55.0% |" in table
    # latency runs shorter in quick mode: the same size all the same, and said so
    assert ("| latency | 10 hosts (100 ticks; published 200) | p95 ms | 110.0 | 100.0 "
            "| +10.0% |") in table
    # sizes only one of the two has are not compared
    assert not any("1000 hosts" in line or "100 × 20,000" in line for line in table)
    assert not any("| browser |" in line for line in table)
    # each target of this run, met or not here and in the published run
    assert ("| chatty 10 hosts: ≥ 200,000 lines/s | 90,000 | **no** | 200,000 | yes |"
            in table)
    assert "| fan-out 50: wall ≤ 1.10 × floor | 1.10× | yes | 1.00× | yes |" in table
    assert ("| browser 200 × 1,000: reload shows every host < 2 s | 1.34 s | yes "
            "| not measured at this size | — |") in table


def test_the_change_in_percent():
    assert report.change(90, 100) == "-10.0%"
    assert report.change(2.5, 2.0) == "+25.0%"
    assert report.change(0, 0) == ""
    assert report.change(3, 0) == "new"
    assert report.change(None, 2.0) == ""


def test_a_smoke_run_never_writes_the_docs(docs, tmp_path):
    before = docs.read_text()
    run = results("smoke", {"chatty": [chatty_row(5, 50_000)]})
    written, _, printed = finish(run, tmp_path, runs.docs_refusal(
        "smoke", sizes_given=False, no_docs=False))
    assert docs.read_text() == before and not report.PUBLISHED.exists()
    assert {p.name for p in written} == {"smoke.json", "smoke-20261202-052031.json",
                                         "smoke.md"}
    assert "Compared with" not in printed


# -- full mode: publishes ---------------------------------------------------------------------

def test_a_full_run_writes_the_generated_section_and_the_published_figures(docs, tmp_path):
    run = full_run()
    written, logged, printed = finish(run, tmp_path)
    text = docs.read_text()
    assert text.startswith(PROSE_BEFORE) and text.endswith(PROSE_AFTER)
    assert OLD_SECTION not in text
    section = text.split(report.BEGIN)[1].split(report.END)[0]
    assert "**full mode**" in section and "### 6. Browser" in section
    assert "![browser](benchmarks/browser.png)" in section
    assert json.loads(report.PUBLISHED.read_text()) == run
    assert report.PUBLISHED in written and docs in written
    assert "Compared with" not in printed
    # the browser targets that were not met say so
    assert ("| browser 1000 × 1,000: reload shows every host < 2 s | 2.50 s | **no** |"
            in section)
    assert ("| browser 1000 × 1,000 live: no long task > 200 ms | 5 over 200 ms, longest "
            "900 ms | **no** |") in section
    assert ("| browser 1000 × 1,000: scrolling the page of logs < 50 ms per frame (p95) | "
            "p95 66.7 ms, max 80.0 ms | **no** |") in section


def test_a_partial_full_run_keeps_the_other_scenarios_of_the_published_run(docs, tmp_path):
    report.PUBLISHED.parent.mkdir(parents=True)
    published = full_run()
    published["busy"] = {"chatty": {"loads": [30.0, 12.0], "published": "repeat",
                                    "threshold": 10.0}}
    published["background"]["chatty"] = 12.0
    report.PUBLISHED.write_text(json.dumps(published))
    only = results("full", {"fanout": fanout_rows(50, 1.9)}, partial=True,
                   started="2026-12-03T10:00:00+00:00")

    finish(only, tmp_path)
    now = json.loads(report.PUBLISHED.read_text())
    assert set(now["scenarios"]) == {"fanout", "chatty", "latency", "browser"}
    assert now["scenarios"]["chatty"] == published["scenarios"]["chatty"]
    walls = {(r["tool"], r["hosts"]): r["wall_s"] for r in now["scenarios"]["fanout"]}
    assert walls[("patchbay", 50)] == 1.9  # the new run's row replaced the old one
    assert walls[("patchbay", 1000)] == 40.0  # a size it did not run stays
    assert now["busy"] == published["busy"]  # chatty's mark stays: it was not run again
    assert now["partial"] is False
    assert [run["started"] for run in now["runs"]] == [published["started"], only["started"]]
    assert now["runs"][1]["scenarios"] == ["fanout"]
    section = docs.read_text().split(report.BEGIN)[1]
    assert "### 2. Chatty output" in section and "### 1. Fan-out" in section
    assert "Busy machine (chatty)" in section


def test_a_partial_full_run_without_published_figures_leaves_the_docs_alone(docs, tmp_path):
    before = docs.read_text()
    only = results("full", {"fanout": fanout_rows(50, 1.9)}, partial=True)
    written, logged, _ = finish(only, tmp_path)
    assert docs.read_text() == before and not report.PUBLISHED.exists()
    assert "make bench-full" in logged
    assert (tmp_path / "results" / "full.json").exists()


def test_bench_report_publishes_only_full_mode_results(docs, tmp_path, capsys):
    before = docs.read_text()
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps(quick_run()))
    assert report.main([str(quick)]) == 2
    assert "only full-mode runs are published" in capsys.readouterr().err
    assert docs.read_text() == before and not report.PUBLISHED.exists()

    full = tmp_path / "full.json"
    full.write_text(json.dumps(full_run()))
    assert report.main([str(full)]) == 0
    assert "### 6. Browser" in docs.read_text()
    assert json.loads(report.PUBLISHED.read_text())["mode"] == "full"


# -- the busy-machine rule -------------------------------------------------------------------

class FakeScenario:
    """Each run returns rows naming the run; ``fail_on`` makes that run raise."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls = 0
        self.fail_on = fail_on

    def __call__(self) -> list[dict]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise TimeoutError("job 3 not done within 900 s")
        return [{"run": self.calls}]


def loads(*values: float):
    sequence = iter(values)
    return lambda: next(sequence)


def test_a_quiet_machine_runs_a_scenario_once():
    scenario, logged = FakeScenario(), []
    rows, record = runs.measure("chatty", scenario, loads(runs.BUSY_LOAD), logged.append)
    assert scenario.calls == 1
    assert rows == [{"run": 1}] and record == {"load": runs.BUSY_LOAD}
    assert not any("busy" in line for line in logged)


def test_a_busy_machine_repeats_a_scenario_once_and_publishes_the_quieter_run():
    scenario, logged = FakeScenario(), []
    rows, record = runs.measure("chatty", scenario, loads(23.0, 12.0), logged.append)
    assert scenario.calls == 2
    assert rows == [{"run": 2}]
    assert record == {"load": 12.0, "busy": {"loads": [23.0, 12.0], "published": "repeat",
                                             "threshold": runs.BUSY_LOAD}}
    assert any("warning: the machine is busy (23.0% other load" in line for line in logged)

    # still busy, and busier, at the repeat: no third run; the first run is published
    scenario = FakeScenario()
    rows, record = runs.measure("chatty", scenario, loads(15.0, 40.0), logged.append)
    assert scenario.calls == 2
    assert rows == [{"run": 1}]
    assert record["load"] == 15.0 and record["busy"]["published"] == "first"
    assert record["busy"]["loads"] == [15.0, 40.0]


def test_a_failed_repeat_keeps_the_first_run_marked():
    scenario = FakeScenario(fail_on=2)
    rows, record = runs.measure("bigjob", scenario, loads(50.0, 5.0), lambda line: None)
    assert rows == [{"run": 1}]
    assert record["busy"]["published"] == "first"
    assert "not done within 900 s" in record["busy"]["repeat_error"]


def test_a_busy_scenario_is_marked_in_the_tables_and_the_loads():
    run = copy.deepcopy(quick_run())
    run["background"]["chatty"] = 12.0
    run["busy"]["chatty"] = {"loads": [23.0, 12.0], "published": "repeat",
                             "threshold": runs.BUSY_LOAD}
    text = report.tables(run)
    header = text.splitlines()[0]
    assert ("chatty 23.0% (**busy machine**: repeated at 12.0%; the repeat is published)"
            in header)
    assert "fanout 0.5%," in header
    chatty = text.split("### 2. Chatty output")[1].split("###")[0]
    assert ("*Busy machine (chatty): 23.0% other load before the first run, 12.0% before "
            "the repeat (over 10% runs a scenario twice); the figures above are the "
            "repeat's.*") in chatty
    assert text.count("Busy machine (") == 1


def test_merging_runs_replaces_busy_marks_of_the_scenarios_run_again():
    first = full_run()
    first["busy"] = {"fanout": {"loads": [20.0, 30.0], "published": "first",
                                "threshold": 10.0}}
    again = results("full", {"fanout": fanout_rows(50, 1.9)}, partial=True,
                    started="2026-12-03T10:00:00+00:00")
    merged = report.merge([first, again])
    assert merged["busy"] == {}
    assert merged["background"]["fanout"] == 0.5
    assert [r["scenarios"] for r in merged["runs"]] == [
        ["browser", "chatty", "fanout", "latency"], ["fanout"]]
