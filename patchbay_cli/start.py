"""Starting jobs: ``patchbay run`` (a runbook) and ``patchbay exec`` (one shell command),
their shared options (servers or tags, parallel, timeout, --follow), and how those
options become the API's ``POST /api/jobs`` body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from patchbay_cli.exits import EXIT_SUCCEEDED, notice, refusals
from patchbay_cli.logs import follow_job
from patchbay_cli.settings import Settings


def _split(values: tuple[str, ...]) -> list[str]:
    """``--servers a,b --servers c`` is ``[a, b, c]``."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _amount(text: str) -> int | str:
    """``3`` is a count, ``25%`` a percentage (as the API takes them)."""
    return int(text) if text.strip().isdigit() else text.strip()


def _targets(servers: tuple[str, ...], tags: tuple[str, ...]) -> dict[str, list[str]]:
    if servers and tags:
        raise click.UsageError("give --servers or --tags, not both")
    if not servers and not tags:
        raise click.UsageError("choose servers: --servers A,B or --tags T")
    return {"servers": _split(servers)} if servers else {"tags": _split(tags)}


def _strategy(**given: Any) -> dict[str, Any]:
    strategy: dict[str, Any] = {}
    if given.get("parallel") is not None:
        strategy["parallel"] = given["parallel"]
    if given.get("batches"):
        strategy["batches"] = [_amount(b) for b in _split((given["batches"],))]
    if given.get("max_failures") is not None:
        strategy["max_failures"] = _amount(given["max_failures"])
    if given.get("timeout") is not None:
        strategy["timeout"] = given["timeout"]
    gate = given.get("gate")
    if gate is not None:
        strategy["gate"] = _gate(gate)
    return strategy


def _gate(gate: str) -> str | dict[str, float]:
    """``--gate``: ``auto``, ``manual`` or ``soak=SECONDS`` as the API takes it."""
    if gate.startswith("soak="):
        seconds = gate.removeprefix("soak=")
        try:
            return {"soak": float(seconds)}
        except ValueError:
            raise click.UsageError(f"--gate {gate}: soak=SECONDS takes a number") from None
    if gate in ("auto", "manual"):
        return gate
    raise click.UsageError(f"--gate {gate}: choose auto, manual or soak=SECONDS")


def _start(settings: Settings, body: dict[str, Any], follow: bool) -> int:
    api = settings.api()
    job_id = api.post("/api/jobs", body)["job_id"]
    if follow:
        return follow_job(settings, job_id)
    notice(f"job #{job_id} started: {api.url}/jobs/{job_id}; follow it with "
           f"`patchbay logs {job_id} --follow`")
    click.echo(job_id)
    return EXIT_SUCCEEDED


def _target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--servers", multiple=True, metavar="A,B",
                     help="Server names (comma-separated, repeatable)."),
        click.option("--tags", multiple=True, metavar="T",
                     help="Every server with one of these tags (comma-separated)."),
        click.option("--parallel", type=click.IntRange(1, 1000),
                     help="Servers at once."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                     metavar="SECONDS", help="Per-step timeout."),
        click.option("--follow", "-f", is_flag=True,
                     help="Show the job live until it ends; exit with its status."),
    ]):
        command = option(command)
    return command


@click.command()
@click.argument("runbook")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A runbook parameter (repeatable).")
@_target_options
@click.option("--batches", metavar="SIZES",
              help="Batch sizes or percentages, e.g. 1,25%,100% (the first is a canary).")
@click.option("--max-failures", metavar="N|P%", help="Failed servers that stop the rollout.")
@click.option("--gate", metavar="auto|manual|soak=SECONDS",
              help="Between batches: go on, pause until promoted, or soak and re-check "
                   "health.")
@click.pass_obj
@refusals
def run(settings: Settings, runbook: str, params: tuple[str, ...], servers: tuple[str, ...],
        tags: tuple[str, ...], parallel: int | None, timeout: float | None, follow: bool,
        batches: str | None, max_failures: str | None, gate: str | None) -> int:
    """Start RUNBOOK on servers; with --follow, show it live and exit with its status.

    Without --follow the job id is printed alone on standard output.
    """
    values: dict[str, str] = {}
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise click.UsageError(f"-p {param}: write NAME=VALUE")
        values[name] = value
    body = {"runbook": runbook, "params": values, **_targets(servers, tags)}
    strategy = _strategy(parallel=parallel, batches=batches, max_failures=max_failures,
                         timeout=timeout, gate=gate)
    if strategy:
        body["strategy"] = strategy
    return _start(settings, body, follow)


@click.command("exec")
@click.argument("command")
@_target_options
@click.pass_obj
@refusals
def exec_command(settings: Settings, command: str, servers: tuple[str, ...],
                 tags: tuple[str, ...], parallel: int | None, timeout: float | None,
                 follow: bool) -> int:
    """Run one shell COMMAND, as typed, on servers (an ad-hoc job)."""
    body: dict[str, Any] = {"command": command, **_targets(servers, tags)}
    strategy = _strategy(parallel=parallel, timeout=timeout)
    if strategy:
        body["strategy"] = strategy
    return _start(settings, body, follow)
