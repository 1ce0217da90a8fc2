"""6. Browser: the job page of a big job in Chromium (Playwright), live and finished.

One job of N hosts printing L lines each (``runbooks/chatty.yml``), with its page
(``/jobs/<id>``) opened right after the start request:

- **live**: long tasks on the page's main thread (a ``PerformanceObserver`` for
  ``longtask`` entries, installed before the page's own scripts by an init script),
  from the page's load until it has applied the job's last event; the JS heap sampled
  every 250 ms (CDP ``Performance.getMetrics``: ``JSHeapUsedSize``).
- **reload** of the finished job's page: milliseconds from navigation start
  (``performance.now()`` in the new document) until the host table shows every host
  with its final status, checked in the page on every animation frame; also until the
  rows are there and until the page has applied every event.
- **scroll**: one server's log (its ``.host-log`` scroll container) from top to bottom
  and back in steps, one step per animation frame, and the page past every server's log
  the same way; frame times are the deltas between ``requestAnimationFrame`` callbacks.
- the heap's peak over all three, after them, and after a forced garbage collection,
  plus CDP's Nodes, LayoutCount, ScriptDuration and TaskDuration.

Chromium is Debian's ``/usr/bin/chromium`` (``playwright install`` downloads nothing
here). Every wait is a poll with a deadline that names what did not happen.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import psutil

from bench import patchbay as pb
from bench.cpu_groups import operators

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 900}
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
POLL_S = 0.25  # polling interval of the deadline loops (and the heap sampling)
LONG_TASK_MS = 200  # the live page's target: no long task over this
SCROLL_STEPS = 100  # steps each way, one per animation frame
SCROLL_RUN = 20  # frames scrolled between two heap samples
RELOAD_KEY = "patchbay-bench-reload"
TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline"]

# Runs before the page's own scripts in every document of the context: records long
# tasks and, when the harness asked for it (sessionStorage), the moments the reloaded
# page's host table has every row, every row's final status, and every event applied.
INIT_SCRIPT = """
(() => {
  const bench = window.__patchbayBench = {longtasks: [], observing: false, reload: null};
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        bench.longtasks.push([entry.startTime, entry.duration]);
      }
    }).observe({type: "longtask", buffered: true});
    bench.observing = true;
  } catch (err) {
    bench.error = String(err);
  }
  let wanted = null;
  try {
    wanted = JSON.parse(sessionStorage.getItem(RELOAD_KEY) || "null");
    sessionStorage.removeItem(RELOAD_KEY);
  } catch (err) {
    wanted = null;
  }
  if (!wanted) return;
  const marks = bench.reload = {rows: null, first: null, shown: null, applied: null};
  const check = () => {
    const now = performance.now();
    const rows = document.querySelectorAll("#hosts tbody tr[data-host]");
    if (rows.length === wanted.hosts) {
      if (marks.rows === null) marks.rows = now;
      if (marks.shown === null) {
        let all = true;
        for (const row of rows) {
          if (row.hidden || row.dataset.status !== wanted.statuses[row.dataset.host]) {
            all = false;
            break;
          }
        }
        if (all) marks.shown = now;
      }
    }
    const body = document.body;
    const applied = body ? Number(body.dataset.appliedSeq || 0) : 0;
    if (marks.first === null && applied > 0) marks.first = now;
    if (marks.applied === null && applied >= wanted.lastSeq) {
      marks.applied = now;
    }
    if (marks.shown === null || marks.applied === null) requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})();
""".replace("RELOAD_KEY", json.dumps(RELOAD_KEY))

# Brings `selector` ("page": the document) into view, scrolled to its top; its range.
# A log of a job of more than 100 servers is built when its section (`reveal`) comes near
# the view: that section is brought into view first.
SCROLL_START_SCRIPT = """
async ([selector, reveal]) => {
  const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  const find = () => selector === "page" ? document.scrollingElement
    : document.querySelector(selector);
  const section = reveal && document.querySelector(reveal);
  if (section) section.scrollIntoView({block: "center"});
  for (let frames = 0; !find() && frames < 600; frames++) await frame();
  const target = find();
  if (!target) return {error: "no element matches " + selector};
  if (selector !== "page") target.scrollIntoView({block: "center"});
  target.scrollTop = 0;
  await frame();
  await frame();
  return {range: target.scrollHeight - target.clientHeight};
}
"""

# Scrolls `selector` to each of `positions`, one per animation frame; the frame deltas.
SCROLL_STEPS_SCRIPT = """
async ({selector, positions}) => {
  const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  const target = selector === "page" ? document.scrollingElement
    : document.querySelector(selector);
  const deltas = [];
  let last = await frame();
  for (const top of positions) {
    target.scrollTop = top;
    const now = await frame();
    deltas.push(now - last);
    last = now;
  }
  return deltas;
}
"""

# Rows on screen still waiting for their text ("…", fetched by seq) in the logs that
# `selector` ("page": every log) shows in the viewport.
PENDING_SCRIPT = """
(selector) => {
  const logs = selector === "page" ? document.querySelectorAll(".host-log")
    : [document.querySelector(selector)];
  let pending = 0;
  for (const log of logs) {
    if (!log) continue;
    const box = log.getBoundingClientRect();
    const top = Math.max(0, box.top);
    const bottom = Math.min(window.innerHeight, box.bottom);
    if (bottom <= top) continue;
    for (const row of log.querySelectorAll(".row-pending")) {
      const r = row.getBoundingClientRect();
      if (r.bottom > top && r.top < bottom) pending += 1;
    }
  }
  return pending;
}
"""


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


def browser(ctx: Any, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """``sizes``: (hosts, lines per host)."""
    if not chromium_available():
        raise RuntimeError(f"the browser scenario needs Chromium at {CHROMIUM} "
                           "(`scripts/system-deps.sh test` installs it)")
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as playwright:
        for hosts, lines in sizes:
            server = ctx.server(f"browser-{hosts}x{lines}")
            instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                  args=CHROMIUM_ARGS)
            try:
                with operators(chromium_pids()) as browser_cpu:
                    rows.append({**_browser_once(ctx, server, instance, hosts, lines),
                                 "browser_cpu": browser_cpu})
            finally:
                instance.close()
                server.stop()
            ctx.log(summary_line(rows[-1]))
    return rows


def chromium_pids() -> list[int]:
    """Chromium's processes started by this benchmark (under Playwright's driver)."""
    return [child.pid for child in psutil.Process().children(recursive=True)
            if "chrom" in child.name()]


def summary_line(row: dict[str, Any]) -> str:
    return (f"  browser {row['hosts']} hosts x {row['lines_per_host']:,} lines: live "
            f"{row['live_longtasks_over_200ms']} long tasks over 200 ms (max "
            f"{row['live_longtask_max_ms']} ms); reload shows every host in "
            f"{row['reload_hosts_ms']} ms; scroll p95 {row['scroll_log_p95_ms']} ms "
            f"(log), {row['scroll_page_p95_ms']} ms (page); heap peak "
            f"{row['heap_peak_mb']} MB")


class _Tab:
    """A logged-in page with a CDP session, and the heap samples taken so far."""

    def __init__(self, browser_instance: Any, url: str) -> None:
        self.url = url
        self.context = browser_instance.new_context(viewport=VIEWPORT)
        self.context.add_init_script(INIT_SCRIPT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("Performance.enable")
        self.heap: list[tuple[float, str, float]] = []  # (s since start, phase, MB)
        self.started = time.monotonic()

    def log_in(self, username: str, password: str) -> None:
        page = self.page
        page.goto(f"{self.url}/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("form.stack [type=submit]")
        deadline = time.monotonic() + 30
        while page.url.rstrip("/") != self.url:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the browser's login as {username} did not reach the "
                                   f"dashboard within 30 s (at {page.url})")
            page.wait_for_timeout(POLL_S * 1000)  # polling interval of a deadline loop

    def metrics(self, phase: str | None = None) -> dict[str, float]:
        """CDP ``Performance.getMetrics``; with ``phase``, the heap is kept as a sample."""
        got = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        if phase is not None:
            self.heap.append((round(time.monotonic() - self.started, 2), phase,
                              mb(got["JSHeapUsedSize"])))
        return got

    def bench(self) -> dict[str, Any]:
        return self.page.evaluate("() => window.__patchbayBench")

    def close(self) -> None:
        self.context.close()


def _browser_once(ctx: Any, server: pb.LiveServer, instance: Any, hosts: int, lines: int
                  ) -> dict[str, Any]:
    http = pb.login(server, pb.STARTER)
    tab = _Tab(instance, server.url)
    try:
        tab.log_in(pb.STARTER, pb.DEFAULT_PASSWORD)
        # Warm-up: a tiny job and its page, so lazy imports, the first database pages and
        # the browser's caches (static files) do not count.
        warm = start_job(server, http, "chatty", {"lines": 10}, ctx.hosts(1))
        wait_finished(server, http, warm, 120)
        tab.page.goto(f"{server.url}/jobs/{warm}")
        wait_page_applied(tab, server, http, warm, 60, "the warm-up job's page")

        names = ctx.hosts(hosts)
        live = _live(ctx, server, http, tab, names, lines)
        reload = _reload(server, http, tab, live["job_id"], hosts, lines)
        log_scroll = _scroll(tab, f'.host-log[data-host="{names[0]}"]', "scroll a log",
                             reveal=f'section.log-section[data-host="{names[0]}"]')
        page_scroll = _scroll(tab, "page", "scroll the page")
        after = tab.metrics("after")
        tab.cdp.send("HeapProfiler.collectGarbage")
        after_gc = tab.metrics()
    finally:
        tab.close()
        http.close()
    heap = [value for _, _, value in tab.heap]
    return {
        "hosts": hosts, "lines_per_host": lines, "lines": hosts * lines,
        **{k: v for k, v in live.items() if k != "job_id"},
        **reload,
        **{f"scroll_log_{k}": v for k, v in log_scroll.items()},
        **{f"scroll_page_{k}": v for k, v in page_scroll.items()},
        "heap_peak_mb": max(heap),
        "heap_after_mb": mb(after["JSHeapUsedSize"]),
        "heap_after_gc_mb": mb(after_gc["JSHeapUsedSize"]),
        "nodes_after": int(after["Nodes"]),
        "heap_series": tab.heap,
    }


def _live(ctx: Any, server: pb.LiveServer, http: Any, tab: _Tab, names: list[str],
          lines: int) -> dict[str, Any]:
    """Start the job, open its page at once, and watch it until the page has applied the
    job's last event."""
    tab.started = time.monotonic()  # the heap series starts with the job
    tab.metrics("live")
    trace = os.environ.get("BENCH_BROWSER_TRACE")  # a diagnosis: the live phase's trace
    if trace:
        tab.context.browser.start_tracing(page=tab.page, categories=TRACE_CATEGORIES)
    job_id = start_job(server, http, "chatty", {"lines": lines}, names)
    opened = time.monotonic()
    tab.page.goto(f"{server.url}/jobs/{job_id}", wait_until="commit")
    timeout = 120 + len(names) * lines / 2000
    deadline = opened + timeout
    status = ""
    while status not in FINISHED:
        if time.monotonic() > deadline:
            job = job_state(server, http, job_id)
            raise TimeoutError(f"the live page of job {job_id} did not show it finished "
                               f"within {timeout:.0f} s (the page says {status!r}; the API "
                               f"says {job['status']}, last seq {job['last_seq']})")
        tab.page.wait_for_timeout(POLL_S * 1000)  # polling interval (and heap sample)
        tab.metrics("live")
        status = tab.page.evaluate(
            "() => (document.getElementById('job-status') || {}).textContent || ''").strip()
    job = wait_page_applied(tab, server, http, job_id, max(10, deadline - time.monotonic()),
                            f"the live page of job {job_id}")
    seconds = time.monotonic() - opened
    end = tab.metrics("live")
    if trace:
        Path(trace).write_bytes(tab.context.browser.stop_tracing())
    if job["status"] != "succeeded":
        raise RuntimeError(f"browser job {job_id} ended {job['status']}")
    bench = tab.bench()
    if not bench.get("observing"):
        raise RuntimeError(f"the long-task observer did not start: {bench.get('error')}")
    tasks = [duration for _, duration in bench["longtasks"]]
    return {
        "job_id": job_id, "last_seq": job["last_seq"],
        "live_seconds": round(seconds, 2),
        **{f"live_{k}": v for k, v in long_task_stats(tasks).items()},
        "live_heap_peak_mb": max(v for _, phase, v in tab.heap if phase == "live"),
        "live_heap_end_mb": mb(end["JSHeapUsedSize"]),
        **{f"live_{k}": v for k, v in cdp_figures(end).items()},
    }


def _reload(server: pb.LiveServer, http: Any, tab: _Tab, job_id: int, hosts: int,
            lines: int) -> dict[str, Any]:
    """Reload the finished job's page; when its host table shows every host."""
    job = job_state(server, http, job_id)
    wanted = {"hosts": hosts, "lastSeq": job["last_seq"],
              "statuses": {h["name"]: h["status"] for h in job["hosts"]}}
    tab.page.evaluate("([key, value]) => sessionStorage.setItem(key, value)",
                      [RELOAD_KEY, json.dumps(wanted)])
    tab.metrics("reload")
    trace = os.environ.get("BENCH_BROWSER_TRACE")  # a diagnosis: FILE.reload
    if trace:
        tab.context.browser.start_tracing(page=tab.page, categories=TRACE_CATEGORIES)
    tab.page.reload(wait_until="commit")
    timeout = round(60 + hosts * lines / 10_000)
    deadline = time.monotonic() + timeout
    marks: dict[str, Any] = {}
    while marks.get("shown") is None or marks.get("applied") is None:
        if time.monotonic() > deadline:
            if not marks:
                raise TimeoutError(f"the reloaded page of job {job_id} never started the "
                                   "harness's marks (its init script found nothing in "
                                   "sessionStorage)")
            missing = [what for what, key in (("every host row", "rows"),
                                              ("every host's final status", "shown"),
                                              ("every event applied", "applied"))
                       if marks[key] is None]
            raise TimeoutError(f"the reloaded page of job {job_id} did not show "
                               f"{' and '.join(missing)} within {timeout} s")
        tab.page.wait_for_timeout(POLL_S * 1000)  # polling interval (and heap sample)
        tab.metrics("reload")
        marks = (tab.bench() or {}).get("reload") or {}
    if trace:
        Path(f"{trace}.reload").write_bytes(tab.context.browser.stop_tracing())
    navigation = tab.page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return n ? {response: n.responseEnd, dcl: n.domContentLoadedEventEnd,"
        " load: n.loadEventEnd} : null; }") or {}
    end = tab.metrics("reload")
    tasks = [duration for _, duration in tab.bench()["longtasks"]]
    return {
        "reload_hosts_ms": round(marks["shown"]),
        "reload_rows_ms": round(marks["rows"]),
        "reload_first_event_ms": round(marks["first"]),
        "reload_applied_ms": round(marks["applied"]),
        "reload_response_ms": round(navigation.get("response") or 0),
        "reload_dcl_ms": round(navigation.get("dcl") or 0),
        **{f"reload_{k}": v for k, v in long_task_stats(tasks).items()},
        "reload_heap_mb": mb(end["JSHeapUsedSize"]),
        **{f"reload_{k}": v for k, v in cdp_figures(end).items()},
    }


def _scroll(tab: _Tab, selector: str, what: str, reveal: str | None = None
            ) -> dict[str, Any]:
    """Frame times while scrolling ``selector`` down and up in ``SCROLL_STEPS`` steps each
    way (in runs of ``SCROLL_RUN`` frames with a heap sample between them; the frame
    across a break is not counted); then how long the rows on screen took to be filled
    in (their text fetched). ``reveal``: the element to bring into view first (a log's
    section, which builds the log)."""
    tab.metrics("scroll")
    start = tab.page.evaluate(SCROLL_START_SCRIPT, [selector, reveal])
    if start.get("error"):
        raise RuntimeError(f"{what}: {start['error']}")
    span = start["range"]
    down = [round(span * i / SCROLL_STEPS) for i in range(1, SCROLL_STEPS + 1)]
    positions = down + down[-2::-1] + [0]
    deltas: list[float] = []
    for first in range(0, len(positions), SCROLL_RUN):
        deltas += tab.page.evaluate(SCROLL_STEPS_SCRIPT, {
            "selector": selector, "positions": positions[first:first + SCROLL_RUN]})
        tab.metrics("scroll")
    scrolled = time.monotonic()
    deadline = scrolled + 30
    while (pending := tab.page.evaluate(PENDING_SCRIPT, selector)) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {pending} rows on screen still waiting for their "
                               "text (…) 30 s after the scroll")
        tab.page.wait_for_timeout(50)  # polling interval of a deadline loop
    tab.metrics("scroll")
    return {**frame_stats(deltas), "range_px": span,
            "filled_ms": round((time.monotonic() - scrolled) * 1000)}


# -- helpers -----------------------------------------------------------------------------

def start_job(server: pb.LiveServer, http: Any, runbook: str, params: dict[str, Any],
              names: list[str]) -> int:
    answer = http.post(f"{server.url}/api/jobs", timeout=60, json={
        "runbook": runbook, "params": params, "servers": names,
        "strategy": {"parallel": len(names)}})
    if answer.status_code != 201:
        raise RuntimeError(f"starting {runbook} on {len(names)} hosts was refused: "
                           f"{answer.status_code} {answer.text[:500]}")
    return answer.json()["job_id"]


def job_state(server: pb.LiveServer, http: Any, job_id: int) -> dict[str, Any]:
    answer = http.get(f"{server.url}/api/jobs/{job_id}", timeout=60)
    answer.raise_for_status()
    return answer.json()["job"]


def wait_finished(server: pb.LiveServer, http: Any, job_id: int, timeout: float
                  ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := job_state(server, http, job_id))["status"] not in FINISHED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not finished within {timeout} s "
                               f"(status {job['status']}, last seq {job['last_seq']})")
        time.sleep(POLL_S)  # polling interval of a deadline loop
    return job


def wait_page_applied(tab: _Tab, server: pb.LiveServer, http: Any, job_id: int,
                      timeout: float, what: str) -> dict[str, Any]:
    """Wait until the job has finished (API) and the page has applied its last event."""
    job = wait_finished(server, http, job_id, timeout)
    deadline = time.monotonic() + timeout
    applied = 0
    while applied < job["last_seq"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} applied events up to seq {applied}, not the job's "
                               f"last ({job['last_seq']}), within {timeout:.0f} s")
        tab.page.wait_for_timeout(POLL_S * 1000)  # polling interval of a deadline loop
        applied = tab.page.evaluate("() => Number(document.body.dataset.appliedSeq || 0)")
    return job


def long_task_stats(durations: list[float]) -> dict[str, Any]:
    return {"longtasks": len(durations),
            "longtasks_over_200ms": sum(1 for d in durations if d > LONG_TASK_MS),
            "longtask_max_ms": round(max(durations, default=0)),
            "longtask_total_ms": round(sum(durations))}


# CDP Performance.getMetrics names, as the results call them (durations in seconds).
CDP_FIGURES = {"ScriptDuration": "script_s", "TaskDuration": "task_s",
               "LayoutDuration": "layout_s", "RecalcStyleDuration": "recalc_style_s",
               "Nodes": "nodes", "LayoutCount": "layout_count",
               "RecalcStyleCount": "recalc_style_count", "JSEventListeners": "listeners"}


def cdp_figures(metrics: dict[str, float]) -> dict[str, Any]:
    """CDP's counters of the current document (they start again at each navigation)."""
    return {name: round(metrics[key], 2) if key.endswith("Duration") else int(metrics[key])
            for key, name in CDP_FIGURES.items()}


def frame_stats(deltas: list[float]) -> dict[str, Any]:
    if not deltas:
        return {"frames": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(deltas)

    def rank(fraction: float) -> float:
        return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 1)

    return {"frames": len(deltas), "p50_ms": rank(0.5), "p95_ms": rank(0.95),
            "max_ms": round(ordered[-1], 1)}


def mb(value: float) -> float:
    return round(value / 2**20, 1)
