"""What a benchmark run does around its scenarios, apart from the fleet and the processes
(so that it can be tested alone): the busy-machine rule, the results files named after
the mode, and what a run prints and publishes.

- Other load on the machine is measured before each scenario. Over ``BUSY_LOAD`` percent
  the scenario is marked busy and repeated once, after measuring the load again; the run
  made under the lower load (the repeat on a tie) is published, and both loads are kept.
- Every run writes ``bench/results/<mode>.json`` (quick, full, smoke; git-ignored) and a
  timestamped copy, ``<mode>-<YYYYmmdd-HHMMSS>.json``, and prints its tables (those of
  docs/benchmarks.md), also kept as ``bench/results/<mode>.md``. A quick run then prints
  a comparison with the published full run (docs/benchmarks/full.json).
- Only a full run publishes (docs/benchmarks.md's generated section, its plots and
  docs/benchmarks/full.json): not with ``--no-docs`` or ``--sizes``; with ``--only``, its
  scenarios are laid over the published figures.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report

BUSY_LOAD = 10.0  # percent of all cores busy with other work: over it, repeat once
RESULTS = Path(__file__).resolve().parent / "results"

Rows = list[dict[str, Any]]


def measure(name: str, run: Callable[[], Rows], load: Callable[[], float],
            log: Callable[[str], None]) -> tuple[Rows, dict[str, Any]]:
    """Run one scenario under the busy-machine rule. Returns its rows to publish and a
    record: ``{"load": L}`` (the published run's load), plus ``"busy": {"loads": [first,
    repeat], "published": "first" | "repeat", "threshold": BUSY_LOAD}`` when the machine
    was busy before the first run."""
    first = load()
    log(f"{name} ... (other CPU load on the machine: {first}% of all cores)")
    if first <= BUSY_LOAD:
        return run(), {"load": first}
    log(f"  warning: the machine is busy ({first}% other load, over {BUSY_LOAD:g}%); expect "
        f"noisier numbers than on an idle one. {name} runs twice, and the run under the "
        "lower load is published")
    rows = run()
    second = load()
    log(f"{name} again, the busy machine's repeat (other CPU load: {second}% of all cores)")
    busy: dict[str, Any] = {"loads": [first, second], "threshold": BUSY_LOAD}
    try:
        again = run()
    except Exception as exc:  # the first run's figures stand, marked
        log(f"  the repeat of {name} failed ({exc}); the first run is published")
        return rows, {"load": first,
                      "busy": {**busy, "published": "first", "repeat_error": str(exc)[:300]}}
    if second <= first:
        return again, {"load": second, "busy": {**busy, "published": "repeat"}}
    log(f"  the first run of {name} had the lower load ({first}% against {second}%): it is "
        "published")
    return rows, {"load": first, "busy": {**busy, "published": "first"}}


def stamp(results: dict[str, Any]) -> str:
    """The run's start as ``YYYYmmdd-HHMMSS`` (UTC)."""
    started = datetime.datetime.fromisoformat(results["started"])
    return started.strftime("%Y%m%d-%H%M%S")


def save(results: dict[str, Any], directory: Path | None = None) -> list[Path]:
    """``<mode>.json`` (the latest run of that mode) and a timestamped copy."""
    directory = directory or RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1) + "\n"
    paths = [directory / f"{results['mode']}.json",
             directory / f"{results['mode']}-{stamp(results)}.json"]
    for path in paths:
        path.write_text(text)
    return paths


def docs_refusal(mode: str, *, sizes_given: bool, no_docs: bool) -> str | None:
    """Why this run does not write the docs, or None when it does (a full run; with
    ``--only`` its scenarios are laid over the published figures)."""
    if no_docs:
        return "--no-docs"
    if mode != "full":
        return (f"a {mode} run never writes docs/benchmarks.md: the page keeps the full "
                "run's figures (`make bench-full`)")
    if sizes_given:
        return ("--sizes: the page shows full mode's sizes (`python -m bench.report "
                "bench/results/full.json` publishes these results anyway)")
    return None


def printed(results: dict[str, Any], published: dict[str, Any] | None) -> str:
    """What a run prints: its tables, and for a quick run the comparison with the
    published full run."""
    text = f"## {results['mode'].capitalize()} run\n\n{report.tables(results)}\n"
    if results["mode"] == "quick":
        text += "\n" + report.comparison(results, published) + "\n"
    return text


def finish(results: dict[str, Any], *, refusal: str | None, log: Callable[[str], None],
           out: Callable[[str], None] = print, directory: Path | None = None) -> list[Path]:
    """Save the results, print the tables (and the comparison), publish if allowed.
    Returns every file written."""
    directory = directory or RESULTS
    written = save(results, directory)
    log(f"results: {_shown(written[0])} (and {written[1].name})")
    text = printed(results, report.load_published())
    summary = directory / f"{results['mode']}.md"
    summary.write_text(text)
    written.append(summary)
    out(text)
    if refusal is not None:
        log(f"docs/benchmarks.md not written: {refusal}")
        return written
    try:
        published = report.publish(report.to_publish([results]))
    except report.NotPublishable as exc:
        log(f"docs/benchmarks.md not written: {exc}")
        return written
    for path in published:
        log(f"wrote {_shown(path)}")
    return written + published


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
