"""Benchmark scenarios 1 to 5 (the sixth, the browser, is ``bench/browser.py``). Each
returns a list of result rows (plain dicts).

Patchbay is always a real ``python app.py`` process (a fresh one and a fresh database
per scenario); its CPU and memory are read with psutil on its PID. Clients are
python-socketio clients: a job counts as done when ``job_finished`` reaches a client
subscribed to it.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import patchbay as pb
from bench.cpu_groups import operators
from bench.fleet import write_contender_fleet
from tests.support.sshd_fleet import SshdFleet

FANOUT_COMMANDS = ["sleep 1", "echo", "true"]  # what runbooks/fanout.yml runs
CONTENDERS = ("floor", "floor-wrapped", "pssh", "threading")
CONNECT_TIMEOUT = 60  # s; 1,000 handshakes at once on 2 cores take a while
PROJECT = Path(__file__).resolve().parent.parent


@dataclass
class Context:
    fleet: SshdFleet
    inventory: Path
    workdir: Path
    log: Callable[[str], None]

    def server(self, name: str) -> pb.LiveServer:
        """A fresh server process and database for one scenario."""
        return pb.start_server(self.workdir / f"server-{name}", self.inventory,
                               max_hosts=1000, connect_timeout=CONNECT_TIMEOUT)

    def hosts(self, count: int) -> list[str]:
        return [h.name for h in self.fleet.hosts[:count]]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Session:
    """The starter's logged-in HTTP session and a client subscribed to its jobs."""

    def __init__(self, server: pb.LiveServer) -> None:
        self.server = server
        self.http = pb.login(server, pb.STARTER)
        self.watch = pb.Watch()
        self.client = pb.watching_client(server, self.http, self._take)

    def _take(self, payload: dict[str, Any]) -> None:
        self.watch.take(payload)

    def run(self, runbook: str, params: dict[str, Any], hosts: list[str],
            timeout: float = 900) -> tuple[pb.Watch, float, int]:
        """Start a job and wait for its ``job_finished``; returns what the client saw,
        the wall time of the start request and the job id."""
        self.watch = pb.Watch()
        started = time.time()
        job_id = pb.start_job(self.client, runbook, params, hosts)
        pb.wait(self.watch.done, timeout, f"job {job_id} ({runbook} on {len(hosts)} hosts)")
        return self.watch, started, job_id

    def warm_up(self, hosts: list[str]) -> None:
        """A tiny job first, so that lazily imported modules and the first database
        pages are not counted as a job's cost."""
        watch, _, _ = self.run("chatty", {"lines": 10}, hosts[:1], timeout=120)
        check_succeeded(watch, "warm-up")

    def close(self) -> None:
        self.client.disconnect()


def check_succeeded(watch: pb.Watch, what: str) -> dict[str, Any]:
    finished = watch.events[max(watch.events)]["data"]
    if finished.get("status") != "succeeded" or not watch.complete():
        raise RuntimeError(f"{what}: job ended {finished} (complete={watch.complete()})")
    return finished


def run_contender(tool: str, fleet_json: Path, count: int, limit: float
                  ) -> dict[str, Any] | None:
    """One tool's fan-out in its own process; None if it had not finished in ``limit``
    seconds (then it is killed: a tool that falls over is a result, not a hang)."""
    try:
        process = subprocess.run([sys.executable, "-W", "ignore", "-m", "bench.contenders",
                                  tool, str(fleet_json), str(count)], cwd=PROJECT,
                                 capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    if process.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


# -- 1. fan-out ------------------------------------------------------------------------

def fanout(ctx: Context, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """``sizes``: (hosts, rounds). Each round runs every tool once, in turn; a tool's
    row is its fastest round (on a shared machine noise only ever adds time), and
    ``rounds`` keeps every measurement."""
    fleet_json = write_contender_fleet(ctx.fleet, ctx.workdir / "contenders.json",
                                       FANOUT_COMMANDS, CONNECT_TIMEOUT)
    server = ctx.server("fanout")
    rows: list[dict[str, Any]] = []
    try:
        session = Session(server)
        session.warm_up(ctx.hosts(1))
        # A console's first job on a server also sweeps that server's run root of old
        # leftovers, then not again for an hour (tasks.transport.ssh.SWEEP_INTERVAL). A console
        # in use has done so: one short job on every host to be measured does it here,
        # so that each size's single round measures what every later job costs.
        largest = max(count for count, _ in sizes)
        watch, _, _ = session.run("chatty", {"lines": 1}, ctx.hosts(largest), timeout=600)
        check_succeeded(watch, f"warm-up on {largest} hosts")
        process = pb.psutil.Process(server.process.pid)
        for count, rounds in sizes:
            measured: dict[str, list[dict[str, Any]]] = {}
            for _ in range(rounds):
                cpu0 = pb.cpu_seconds(process)
                watch, started, _ = session.run("fanout", {}, ctx.hosts(count))
                cpu = pb.cpu_seconds(process) - cpu0
                check_succeeded(watch, f"fan-out {count}")
                measured.setdefault("patchbay", []).append(
                    _fanout_row("patchbay", count, watch.finished_at - started, cpu, 0))
                ctx.log(_fanout_line(measured["patchbay"][-1]))
                limit = max(120.0, 4 * (watch.finished_at - started))
                for tool in CONTENDERS:
                    result = run_contender(tool, fleet_json, count, limit)
                    if result is None:
                        measured.setdefault(tool, []).append(
                            {"tool": tool, "hosts": count, "wall_s": None, "cpu_s": None,
                             "cpu_ms_per_host": None, "failures": None,
                             "unfinished_after_s": round(limit)})
                        ctx.log(f"  fan-out {count:>5} hosts  {tool:<13} did not finish "
                                f"within {limit:.0f} s (4 × Patchbay's time); stopped")
                        continue
                    measured.setdefault(tool, []).append(
                        _fanout_row(tool, count, result["wall"], result["cpu"],
                                    result["failures"]))
                    ctx.log(_fanout_line(measured[tool][-1]))
            for runs in measured.values():
                finished = [row for row in runs if row["wall_s"] is not None]
                best = min(finished, key=lambda row: row["wall_s"]) if finished else runs[0]
                rows.append({**best, "rounds": [[r["wall_s"], r["cpu_s"]] for r in runs]})
        session.close()
    finally:
        server.stop()
    return rows


def _fanout_row(tool: str, hosts: int, wall: float, cpu: float, failures: int
                ) -> dict[str, Any]:
    return {"tool": tool, "hosts": hosts, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "cpu_ms_per_host": round(cpu / hosts * 1000, 2), "failures": failures}


def _fanout_line(row: dict[str, Any]) -> str:
    return (f"  fan-out {row['hosts']:>5} hosts  {row['tool']:<13} wall {row['wall_s']:7.2f} s"
            f"  cpu {row['cpu_s']:6.2f} s ({row['cpu_ms_per_host']:.1f} ms/host)"
            + (f"  FAILURES {row['failures']}" if row["failures"] else ""))


# -- 2. chatty output --------------------------------------------------------------------

def chatty(ctx: Context, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    rows = []
    for hosts, lines in sizes:
        server = ctx.server(f"chatty-{hosts}")
        try:
            session = Session(server)
            session.warm_up(ctx.hosts(1))
            with pb.Sampler(server.process.pid) as sampler:
                watch, started, _ = session.run("chatty", {"lines": lines}, ctx.hosts(hosts))
            check_succeeded(watch, f"chatty {hosts}x{lines}")
            session.close()
        finally:
            server.stop()
        outputs = [(watch.arrivals[s], e) for s, e in watch.events.items()
                   if e["type"] == "output"]
        received = sum(len(e["data"]["lines"]) for _, e in outputs)
        last = max(t for t, _ in outputs)
        first = min(t for t, _ in outputs)
        expected = hosts * lines
        rows.append({
            "hosts": hosts, "lines_per_host": lines, "lines": received,
            "complete": received == expected and _in_order(watch, lines),
            "seconds": round(last - started, 3),
            "lines_per_s": round(received / (last - started)),
            "streaming_lines_per_s": round(received / max(last - first, 1e-6)),
            "output_events": len(outputs),
            "server_cpu_s": round(sampler.cpu, 2),
            "rss_before_mb": mb(sampler.rss_before), "rss_after_mb": mb(sampler.rss_after),
            "rss_peak_mb": mb(sampler.rss_peak),
        })
        row = rows[-1]
        ctx.log(f"  chatty {hosts} hosts x {lines} lines: {row['lines_per_s']:,} lines/s "
                f"({row['seconds']} s, complete={row['complete']}), server cpu "
                f"{row['server_cpu_s']} s, rss {row['rss_before_mb']} -> peak "
                f"{row['rss_peak_mb']} -> {row['rss_after_mb']} MB")
    return rows


def _in_order(watch: pb.Watch, lines: int) -> bool:
    """Every host's lines arrived once each, in order."""
    per_host: dict[str, list[str]] = {}
    for seq in sorted(watch.events):
        event = watch.events[seq]
        if event["type"] == "output" and event["data"]["stream"] == "stdout":
            per_host.setdefault(event["host"], []).extend(event["data"]["lines"])
    return all(len(got) == lines and got[0].endswith(" 000000001 of a busy build script")
               and got[-1].startswith(f"chatty output line {lines:09d} ")
               for got in per_host.values())


def mb(value: int) -> float:
    return round(value / 2**20, 1)


# -- 3. latency ----------------------------------------------------------------------------

def latency(ctx: Context, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    rows = []
    for hosts, ticks in sizes:
        server = ctx.server(f"latency-{hosts}")
        try:
            session = Session(server)
            session.warm_up(ctx.hosts(1))
            with pb.Sampler(server.process.pid) as sampler, \
                    pb.Sampler(os.getpid(), interval=1) as client:
                watch, _, _ = session.run("ticker", {"ticks": ticks}, ctx.hosts(hosts))
            check_succeeded(watch, f"latency {hosts}")
            session.close()
        finally:
            server.stop()
        delays = line_delays(watch)
        rows.append({"hosts": hosts, "ticks": ticks, **delay_stats(delays),
                     "complete": len(delays) == hosts * ticks,
                     "server_cpu_s": round(sampler.cpu, 2),
                     "server_cpu_percent": round(100 * sampler.cpu / sampler.wall, 1),
                     "client_cpu_percent": round(100 * client.cpu / client.wall, 1)})
        ctx.log(f"  latency {hosts} hosts: p50 {rows[-1]['p50_ms']} ms, p95 "
                f"{rows[-1]['p95_ms']} ms, p99 {rows[-1]['p99_ms']} ms over "
                f"{len(delays)} lines; server cpu {rows[-1]['server_cpu_percent']}%")
    return rows


def line_delays(watch: pb.Watch) -> list[float]:
    """Milliseconds from each line's remote timestamp to its arrival at the client
    (live events only: a replayed event is old by design)."""
    delays = []
    for seq, event in watch.events.items():
        if event["type"] != "output" or seq in watch.replayed:
            continue
        arrived = watch.arrivals[seq]
        delays.extend((arrived - float(line)) * 1000 for line in event["data"]["lines"])
    return delays


def delay_stats(delays: list[float]) -> dict[str, Any]:
    if not delays:
        return {"lines": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {"lines": len(delays), "p50_ms": round(percentile(delays, 0.50), 1),
            "p95_ms": round(percentile(delays, 0.95), 1),
            "p99_ms": round(percentile(delays, 0.99), 1), "max_ms": round(max(delays), 1),
            "mean_ms": round(statistics.fmean(delays), 1)}


# -- 4. watchers ---------------------------------------------------------------------------

def watchers(ctx: Context, sizes: list[tuple[int, int, int, int]]) -> list[dict[str, Any]]:
    """``sizes``: (idle clients, subscribed clients, hosts, ticks)."""
    rows = []
    for idle, subscribed, hosts, ticks in sizes:
        server = ctx.server(f"watchers-{idle}-{subscribed}")
        try:
            rows.append(_watchers_once(ctx, server, idle, subscribed, hosts, ticks))
        finally:
            server.stop()
        row = rows[-1]
        ctx.log(f"  watchers {idle} idle + {subscribed} subscribed: all complete "
                f"{row['all_complete']}, p95 {row['p95_ms']} ms (p99 {row['p99_ms']}), "
                f"server cpu {row['server_cpu_s']} s ({row['server_cpu_percent']}%), "
                f"watching clients' cpu {row['client_cpu_percent']}%")
    return rows


WATCHER_PROCESSES = 5  # the subscribed watchers are spread over this many processes


def _watcher_groups(server: pb.LiveServer, http: Any, subscribed: int
                    ) -> list[subprocess.Popen]:
    """Processes of subscribed watchers (bench/watch_clients.py says why not threads of
    this one), each connected and waiting for a job id."""
    sizes = [subscribed // WATCHER_PROCESSES + (i < subscribed % WATCHER_PROCESSES)
             for i in range(min(WATCHER_PROCESSES, subscribed))]
    groups = [subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", "bench.watch_clients", server.url,
         json.dumps(http.cookies.get_dict()), http.headers["X-CSRFToken"], str(size)],
        cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for size in sizes]
    for group, size in zip(groups, sizes, strict=True):
        ready = group.stdout.readline().split()
        if ready[:1] != ["ready"] or int(ready[1]) != size:
            raise RuntimeError(f"watchers did not all connect: {ready}")
    return groups


def _cpu_of(process: subprocess.Popen) -> float:
    try:
        return pb.cpu_seconds(pb.psutil.Process(process.pid))
    except pb.psutil.NoSuchProcess:
        return 0.0


def _watchers_once(ctx: Context, server: pb.LiveServer, idle: int, subscribed: int,
                   hosts: int, ticks: int) -> dict[str, Any]:
    session = Session(server)
    session.warm_up(ctx.hosts(1))
    idle_http = pb.login(server, pb.IDLE)
    idle_process = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", "bench.idle_clients", server.url,
         json.dumps(idle_http.cookies.get_dict()), str(idle),
         idle_http.headers["X-CSRFToken"]], cwd=PROJECT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    groups: list[subprocess.Popen] = []
    try:
        ready = idle_process.stdout.readline().split()
        if ready[:1] != ["ready"] or int(ready[1]) != idle:
            raise RuntimeError(f"idle clients did not all connect: {ready}")
        watcher_http = pb.login(server, pb.WATCHER)
        groups.extend(_watcher_groups(server, watcher_http, subscribed))
        process = pb.psutil.Process(server.process.pid)
        clients_cpu0 = sum(pb.cpu_seconds(pb.psutil.Process(g.pid)) for g in groups)
        cpu0, wall0 = pb.cpu_seconds(process), time.monotonic()
        session.watch = pb.Watch()
        with operators([idle_process.pid, *(g.pid for g in groups)]) as clients_cpu_group:
            job_id = pb.start_job(session.client, "ticker", {"ticks": ticks},
                                  ctx.hosts(hosts))
            for group in groups:
                group.stdin.write(f"{job_id}\n")
                group.stdin.flush()
            reports = [json.loads(group.stdout.readline()) for group in groups]
            cpu, wall = pb.cpu_seconds(process) - cpu0, time.monotonic() - wall0
            client_cpu = sum(_cpu_of(g) for g in groups) - clients_cpu0
        for group in groups:
            group.stdin.close()
            group.wait(timeout=60)
        if any(report["refused"] for report in reports):
            raise RuntimeError("a watcher's subscribe was refused")
        pb.wait(session.watch.done, 60, "the starter's job_finished")
        check_succeeded(session.watch, "watched job")
        delays = [d for report in reports for d in report["delays"]]
        complete = sum(report["complete"] for report in reports)
    finally:
        for group in groups:
            if group.poll() is None:
                group.kill()
        idle_process.stdin.close()
        still = idle_process.stdout.readline().split()
        idle_process.wait(timeout=120)
    session.close()
    return {"idle": idle, "subscribed": subscribed, "hosts": hosts, "ticks": ticks,
            "all_complete": complete == subscribed,
            "idle_still_connected": int(still[1]) if still[:1] == ["connected"] else None,
            **delay_stats(delays), "server_cpu_s": round(cpu, 2),
            "server_cpu_percent": round(100 * cpu / wall, 1),
            "client_cpu_percent": round(100 * client_cpu / wall, 1),
            "clients_cpu_group": clients_cpu_group}


# -- 5. big job memory ---------------------------------------------------------------------

def bigjob(ctx: Context, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """``sizes``: (hosts, lines per host)."""
    rows = []
    for hosts, lines in sizes:
        server = ctx.server(f"bigjob-{hosts * lines}")
        try:
            session = Session(server)
            session.warm_up(ctx.hosts(1))
            with pb.Sampler(server.process.pid, interval=0.1) as sampler:
                watch, started, _ = session.run("chatty", {"lines": lines}, ctx.hosts(hosts))
            check_succeeded(watch, f"big job {hosts}x{lines}")
            settled = _settled_rss(pb.psutil.Process(server.process.pid))
            session.close()
            db_size = sum(p.stat().st_size for p in server.directory.glob("patchbay.db*"))
        finally:
            server.stop()
        rows.append({
            "hosts": hosts, "lines": hosts * lines, "received": watch.output_lines(),
            "seconds": round(watch.finished_at - started, 2),
            "rss_before_mb": mb(sampler.rss_before), "rss_peak_mb": mb(sampler.rss_peak),
            "rss_after_mb": mb(settled),
            "peak_growth_mb": mb(sampler.rss_peak - sampler.rss_before),
            "growth_mb": mb(settled - sampler.rss_before),
            "server_cpu_s": round(sampler.cpu, 2), "db_mb": mb(db_size),
            "rss_series": [(round(t, 2), mb(rss)) for t, rss in sampler.rss],
        })
        row = rows[-1]
        ctx.log(f"  big job {row['lines']:,} lines: rss {row['rss_before_mb']} -> peak "
                f"{row['rss_peak_mb']} -> {row['rss_after_mb']} MB (peak growth "
                f"{row['peak_growth_mb']} MB) in {row['seconds']} s")
    return rows


def _settled_rss(process: Any, timeout: float = 5.0) -> int:
    """RSS once it stops moving (two readings 0.2 s apart within 1 MB), or at the
    deadline."""
    deadline = time.monotonic() + timeout
    previous = process.memory_info().rss
    while time.monotonic() < deadline:
        time.sleep(0.2)  # polling interval of a deadline loop
        current = process.memory_info().rss
        if abs(current - previous) < 2**20:
            return current
        previous = current
    return process.memory_info().rss
