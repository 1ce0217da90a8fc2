"""The browser scenario's arithmetic (bench/browser.py), without a browser: frame and
long-task figures, CDP's metric names, the script that marks the reloaded page."""

from __future__ import annotations

from bench import browser


def test_frame_times_are_nearest_rank_percentiles_of_the_deltas():
    deltas = [16.7] * 90 + [33.3] * 6 + [50.0] * 3 + [120.4]
    assert browser.frame_stats(deltas) == {"frames": 100, "p50_ms": 16.7, "p95_ms": 33.3,
                                           "max_ms": 120.4}
    assert browser.frame_stats([]) == {"frames": 0, "p50_ms": None, "p95_ms": None,
                                       "max_ms": None}


def test_long_tasks_over_200_ms_are_counted_apart():
    assert browser.long_task_stats([51.0, 200.0, 200.5, 741.2]) == {
        "longtasks": 4, "longtasks_over_200ms": 2, "longtask_max_ms": 741,
        "longtask_total_ms": 1193}
    assert browser.long_task_stats([]) == {"longtasks": 0, "longtasks_over_200ms": 0,
                                           "longtask_max_ms": 0, "longtask_total_ms": 0}


def test_cdp_metrics_are_named_as_the_results_name_them():
    metrics = {"ScriptDuration": 0.2345, "TaskDuration": 3.651, "LayoutDuration": 0.5,
               "RecalcStyleDuration": 0.25, "Nodes": 15353.0, "LayoutCount": 30.0,
               "RecalcStyleCount": 36.0, "JSEventListeners": 210.0, "JSHeapUsedSize": 1.0}
    assert browser.cdp_figures(metrics) == {
        "script_s": 0.23, "task_s": 3.65, "layout_s": 0.5, "recalc_style_s": 0.25,
        "nodes": 15353, "layout_count": 30, "recalc_style_count": 36, "listeners": 210}


def test_the_init_script_reads_the_harness_key_and_marks_final_statuses():
    script = browser.INIT_SCRIPT
    assert 'sessionStorage.getItem("patchbay-bench-reload")' in script
    assert "RELOAD_KEY" not in script
    assert '"longtask"' in script and "buffered: true" in script
    assert "row.dataset.status !== wanted.statuses[row.dataset.host]" in script
