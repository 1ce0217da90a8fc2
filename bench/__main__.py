"""Run the benchmarks: ``python -m bench [--full | --smoke] [--only fanout,chatty,...]``.

Starts an OpenSSH fleet on 127.1.0.x, runs each scenario at each of the mode's sizes
(a scenario that starts on a busy machine runs twice: ``bench/runs.py``), writes
``bench/results/<mode>.json`` and prints the result tables; a quick run also prints a
comparison with the published full run. Only a full run writes the plots in
``docs/benchmarks/``, the numbers in ``docs/benchmarks.md`` (between its
generated-section markers) and the published figures, ``docs/benchmarks/full.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import browser, runs, scale, scenarios
from bench import fleet as bench_fleet
from tests.support.sshd_fleet import SSHD

# What each scenario runs, per mode (quick mode fits in 5 minutes on 2 cores):
# fanout (hosts, rounds); chatty (hosts, lines per host); latency (hosts, ticks of 50 ms);
# watchers (idle clients, subscribed clients, hosts, ticks); bigjob (hosts, lines per host);
# browser (hosts, lines per host); scale (hosts): full and smoke modes only.
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "fanout": [(50, 1), (200, 1)],
        "chatty": [(10, 20_000), (50, 20_000)],
        "latency": [(10, 100), (50, 100)],
        "watchers": [(500, 50, 50, 100)],
        "bigjob": [(10, 100_000)],
        "browser": [(200, 1000)],
    },
    "smoke": {  # seconds: checks the harness itself
        "fanout": [(10, 1)],
        "chatty": [(5, 2_000)],
        "latency": [(5, 20)],
        "watchers": [(20, 5, 5, 20)],
        "bigjob": [(2, 10_000)],
        "browser": [(5, 200)],
        "scale": [(40,)],
    },
    "full": {
        "fanout": [(50, 2), (200, 2), (500, 1), (1000, 1)],
        "chatty": [(10, 20_000), (50, 20_000), (100, 20_000)],
        "latency": [(10, 200), (50, 200), (100, 200)],
        "watchers": [(100, 10, 50, 200), (500, 50, 50, 200)],
        "bigjob": [(10, 10_000), (10, 100_000), (1, 1_000_000)],
        "browser": [(1000, 1000)],
        "scale": [(5000,)],
    },
}
RUNNERS = {"fanout": scenarios.fanout, "chatty": scenarios.chatty,
           "latency": scenarios.latency, "watchers": scenarios.watchers,
           "bigjob": scenarios.bigjob, "browser": browser.browser, "scale": scale.scale}
SCENARIOS = tuple(RUNNERS)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu_model": _cpu_model(), "python": platform.python_version(),
            "kernel": platform.release(), "sshd": _sshd_version()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _sshd_version() -> str:
    done = subprocess.run([SSHD, "-V"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip().splitlines()[0]


def background_load(seconds: float = 1.0) -> float:
    """Percent of all cores busy while the benchmark itself is idle (between scenarios
    only its idle sshd fleet runs): other people's work on a shared machine."""
    return round(psutil.cpu_percent(interval=seconds), 1)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true",
                        help="every size (about 10 minutes); publishes the figures")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the harness itself")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios to run (default: all)")
    parser.add_argument("--sizes", type=json.loads, default={},
                        help='override sizes as JSON, e.g. \'{"fanout": [[500, 2]]}\' '
                             "(never publishes)")
    parser.add_argument("--no-docs", action="store_true",
                        help="a full run writes only bench/results/, not docs/benchmarks.md, "
                             "its plots and docs/benchmarks/full.json")
    args = parser.parse_args()
    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = (set(chosen) | set(args.sizes)) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    sizes = {**MODES[mode], **{name: [tuple(size) for size in value]
                               for name, value in args.sizes.items()}}

    began = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {message}", flush=True)

    limit = bench_fleet.raise_open_files_limit()
    chosen = [name for name in SCENARIOS if name in chosen and sizes.get(name)]
    needs = {"fanout": lambda size: size[0], "chatty": lambda size: size[0],
             "latency": lambda size: size[0], "watchers": lambda size: size[2],
             "bigjob": lambda size: size[0], "browser": lambda size: size[0],
             "scale": lambda size: size[0]}
    fleet_size = max(needs[name](size) for name in chosen for size in sizes[name])
    workdir = Path(tempfile.mkdtemp(prefix="patchbay-bench-"))
    log(f"{mode} mode: {', '.join(chosen)}; fleet of {fleet_size} sshd hosts "
        f"(open files limit {limit}); work dir {workdir}")
    fleet = bench_fleet.start(workdir / "fleet", fleet_size)
    inventory = bench_fleet.write_inventory(fleet, workdir / "inventory.yml")
    log(f"fleet up: {len(fleet.processes)} sshd processes on port {fleet.port}")
    ctx = scenarios.Context(fleet, inventory, workdir, log)
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": mode, "machine": machine(), "scenarios": {}, "background": {}, "busy": {},
        # --only or --sizes: a full run's partial results are laid over the published ones
        "partial": chosen != list(SCENARIOS) or bool(args.sizes),
        "sizes": {name: sizes[name] for name in chosen},
    }
    try:
        for name in chosen:
            rows, record = runs.measure(name, lambda name=name: RUNNERS[name](ctx, sizes[name]),
                                        background_load, log)
            results["scenarios"][name] = rows
            results["background"][name] = record["load"]
            if "busy" in record:
                results["busy"][name] = record["busy"]
    finally:
        fleet.stop()
    results["seconds"] = round(time.monotonic() - began, 1)
    runs.finish(results, log=log, refusal=runs.docs_refusal(
        mode, sizes_given=bool(args.sizes), no_docs=args.no_docs))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
