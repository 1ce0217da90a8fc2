"""The scale scenario: one fan-out job on thousands of servers (full mode: 5,000).

The fleet is the benchmark's own (bench/fleet.py): sshd takes at most 16 listening
sockets, so 5,000 servers are 313 sshd processes, each with its 16 loopback addresses
on one port (loopback has addresses to spare, so no second port is needed). Patchbay
runs the fan-out runbook's three commands on every server, 1,000 at a time (the most a
strategy allows, and ``PATCHBAY_MAX_CONCURRENT_HOSTS`` here), and the harness reports
the wall time, the server's CPU and memory, how big the job's event log is, and what
the job's page costs a browser (reload until every host shows, and its heap).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from bench import browser as bench_browser
from bench import patchbay as pb
from bench.scenarios import Context, Session

PARALLEL = 1000
JOB_TIMEOUT = 1800  # s


def scale(ctx: Context, sizes: list[tuple[int]]) -> list[dict[str, Any]]:
    """``sizes``: (hosts,)."""
    rows = []
    for (hosts,) in sizes:
        server = ctx.server(f"scale-{hosts}")
        try:
            rows.append(_scale_once(ctx, server, hosts))
        finally:
            server.stop()
        ctx.log(summary_line(rows[-1]))
    return rows


def summary_line(row: dict[str, Any]) -> str:
    return (f"  scale {row['hosts']:,} hosts: {row['failures']} failures (client dropped "
            f"{row['client_drops']} times, caught up), wall "
            f"{row['wall_s']} s, server cpu {row['cpu_s']} s ({row['cpu_ms_per_host']} "
            f"ms/host), rss +{row['rss_growth_mb']} MB, {row['events']:,} events "
            f"({row['event_log_mb']} MB); page: every host in {row['page_hosts_ms']} ms, "
            f"heap {row['page_heap_mb']} MB")


def _scale_once(ctx: Context, server: pb.LiveServer, hosts: int) -> dict[str, Any]:
    session = Session(server)
    session.warm_up(ctx.hosts(1))
    session.close()
    process = pb.psutil.Process(server.process.pid)
    names = ctx.hosts(hosts)
    starter = _Starter(server)
    with pb.Sampler(server.process.pid, interval=0.25) as sampler:
        job_id = starter.start(names)
        try:
            pb.wait(starter.watch.done, JOB_TIMEOUT, f"job {job_id} on {hosts} hosts")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: the client (connected: {starter.client.connected}, "
                               f"dropped {starter.drops} times) has {_seen(starter.watch)}"
                               ) from None
    finished = starter.watch.events[starter.watch.last_seq]["data"]
    counts = finished.get("counts") or {}
    failures = sum(n for status, n in counts.items() if status != "succeeded")
    wall = float(finished.get("duration") or 0)  # the server's own measure of the job
    cpu = sampler.cpu
    log_rows, log_bytes = _event_log(server, job_id)
    page = _job_page(server, job_id, hosts)
    drops = starter.drops
    starter.close()
    return {
        "hosts": hosts, "parallel": min(PARALLEL, hosts), "complete": starter.watch.complete(),
        "client_drops": drops,
        "status": finished.get("status"), "failures": failures,
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "cpu_ms_per_host": round(cpu / hosts * 1000, 2),
        "rss_before_mb": _mb(sampler.rss_before),
        "rss_peak_mb": _mb(sampler.rss_peak),
        "rss_growth_mb": _mb(sampler.rss_peak - sampler.rss_before),
        "events": log_rows, "event_log_mb": round(log_bytes / 2**20, 1),
        "database_mb": round(_database_bytes(server) / 2**20, 1),
        **page,
        "process_cpu_total_s": round(pb.cpu_seconds(process), 2),
    }


class _Starter:
    """The starter's client, as the console's pages and CLI behave: it reconnects when
    dropped and subscribes again after the last event it has, so the job's whole log
    reaches it. On a 2-core machine saturated by thousands of SSH handshakes a measuring
    client in Python can fall 20 s behind and miss a ping; the server then drops it, as
    it drops any client that stops answering."""

    def __init__(self, server: pb.LiveServer) -> None:
        self.http = pb.login(server, pb.STARTER)
        self.watch = pb.Watch()
        self.job_id: int | None = None
        self.drops = 0
        self.client = pb.MeasuringClient(http_session=self.http, reconnection=True,
                                         reconnection_delay=0.5,
                                         websocket_extra_options=pb.CLIENT_WEBSOCKET_OPTIONS)
        self.client.on("job:events", self.watch.take)
        self.client.on("connect", self._connected)
        self.client.on("disconnect", self._dropped)
        self.client.connect(server.url, transports=["websocket"], wait_timeout=30,
                            auth=pb.handshake(self.http))

    def start(self, names: list[str]) -> int:
        ack = self.client.call("job:start", {
            "runbook": "fanout", "params": {}, "servers": names,
            "strategy": {"parallel": min(PARALLEL, len(names))}}, timeout=300)
        if not ack.get("ok"):
            raise RuntimeError(f"job:start refused: {ack}")
        self.job_id = ack["job_id"]
        return self.job_id

    def _connected(self) -> None:
        if self.job_id is not None:  # a reconnect: catch up from the log
            self.client.emit("job:subscribe", {"job_id": self.job_id,
                                               "after_seq": _contiguous(self.watch)})

    def _dropped(self, *_: Any) -> None:
        self.drops += 1

    def close(self) -> None:
        self.client.disconnect()
        self.http.close()


def _contiguous(watch: pb.Watch) -> int:
    with watch.lock:
        top = 0
        while top + 1 in watch.events:
            top += 1
    return top


def _seen(watch: pb.Watch) -> str:
    """Which events a client has (for a delivery that never completed)."""
    with watch.lock:
        seqs = sorted(watch.events)
    if not seqs:
        return "no events"
    missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
    return (f"{len(seqs)} events up to seq {seqs[-1]} (job_finished: {watch.last_seq}); "
            f"missing {len(missing)}: {missing[:20]}")


def _mb(value: float) -> float:
    return round(value / 2**20, 1)


def _database_file(server: pb.LiveServer) -> Path | None:
    url = server.env.get("DATABASE_URL") or server.env.get("PATCHBAY_SQLALCHEMY_DATABASE_URI")
    if url and url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    found = sorted(server.directory.glob("*.db"))
    return found[0] if found else None


def _database_bytes(server: pb.LiveServer) -> int:
    path = _database_file(server)
    if path is None:
        return 0
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _event_log(server: pb.LiveServer, job_id: int) -> tuple[int, int]:
    """Rows of the job's event log and their stored bytes (the JSON of each event)."""
    path = _database_file(server)
    if path is None:
        raise RuntimeError("the scale scenario reads the event log from the SQLite file")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows, size = connection.execute(
            "SELECT count(*), coalesce(sum(length(CAST(data AS BLOB))), 0) + "
            "coalesce(sum(length(type) + length(coalesce(host, '')) + 16), 0) "
            "FROM job_events WHERE job_id = ?", (job_id,)).fetchone()
    return int(rows), int(size)


def _job_page(server: pb.LiveServer, job_id: int, hosts: int) -> dict[str, Any]:
    """The finished job's page in Chromium: opened, then reloaded until every host
    shows its final status (bench/browser.py's marks)."""
    if not bench_browser.chromium_available():
        raise RuntimeError(f"the scale scenario's page figures need Chromium at "
                           f"{bench_browser.CHROMIUM}")
    from playwright.sync_api import sync_playwright

    http = pb.login(server, pb.STARTER)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=bench_browser.CHROMIUM,
                                              headless=True, args=bench_browser.CHROMIUM_ARGS)
        try:
            tab = bench_browser._Tab(instance, server.url)  # noqa: SLF001 - same harness
            tab.log_in(pb.STARTER, pb.DEFAULT_PASSWORD)
            tab.page.goto(f"{server.url}/jobs/{job_id}", wait_until="commit")
            bench_browser.wait_page_applied(tab, server, http, job_id, 300,
                                            f"the page of job {job_id}")
            reload = bench_browser._reload(server, http, tab, job_id, hosts, 0)  # noqa: SLF001
            metrics = tab.metrics()
            tab.close()
        finally:
            instance.close()
            http.close()
    return {"page_rows_ms": reload["reload_rows_ms"], "page_hosts_ms": reload["reload_hosts_ms"],
            "page_applied_ms": reload["reload_applied_ms"],
            "page_longtask_max_ms": reload.get("reload_longtask_max_ms"),
            "page_heap_mb": _mb(metrics["JSHeapUsedSize"]),
            "page_nodes": int(metrics["Nodes"])}
