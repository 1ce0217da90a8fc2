"""The read-only commands: ``patchbay jobs``, ``show``, ``servers`` and ``runbooks``,
each a table (or, with ``--json``, the API's JSON)."""

from __future__ import annotations

import click

from patchbay_cli.exits import EXIT_SUCCEEDED, refusals
from patchbay_cli.settings import Settings
from patchbay_cli.tables import labelled, param_words, print_json, strategy_words, table, when


@click.command()
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--status", help="Only jobs with this status.")
@click.option("--runbook", help="Only jobs of this runbook (adhoc: ad-hoc commands).")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def jobs(settings: Settings, limit: int, status: str | None, runbook: str | None,
         as_json: bool) -> int:
    """Recent jobs, newest first."""
    listed = settings.api().get("/api/jobs", limit=limit, status=status,
                                runbook=runbook)["jobs"]
    if as_json:
        print_json(listed)
        return EXIT_SUCCEEDED
    # The parameters last, each whole: on a terminal they wrap onto more lines of the row.
    # A rollback: "Roll back (game-update)", its builds before and after first.
    table(["JOB", "STATUS", "RUNBOOK", "SERVERS", "BY", "CREATED (UTC)", "PARAMS"], [
        [j["id"], j["status"], j.get("title") or j["runbook"], len(j["hosts"]),
         j["created_by"], when(j["created_at"]),
         ([j["builds_words"]] if j.get("builds_words") else []) + param_words(j)]
        for j in listed], wrap=6)
    return EXIT_SUCCEEDED


@click.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def show(settings: Settings, job_id: int, as_json: bool) -> int:
    """One job: its status and each server's."""
    api = settings.api()
    job = api.job(job_id)
    if as_json:
        print_json(job)
        return EXIT_SUCCEEDED
    click.echo(f"job #{job['id']} {job.get('title') or job['runbook']} ({job['kind']}): "
               f"{job['status']}")
    for line in labelled("params", param_words(job)) if param_words(job) else []:
        click.echo(line)
    if job.get("builds_words"):
        click.echo(f"  builds: {job['builds_words']}")
    about = [("strategy", strategy_words(job["strategy"])),
             ("created", f"{when(job['created_at'])} UTC by {job['created_by']}"),
             ("finished", job["finished_at"] and f"{when(job['finished_at'])} UTC"),
             ("rerun of", job["rerun_of"]), ("reruns", ", ".join(map(str, job["reruns"]))),
             ("page", f"{api.url}/jobs/{job['id']}")]
    for label, value in about:
        if value:
            click.echo(f"  {label}: {value}")
    click.echo()
    rollback = job["kind"] == "rollback"  # each server's builds before and after
    table(["SERVER", "BATCH", "STATUS", *(["BUILD"] if rollback else []), "STEP", "EXIT",
           "REASON"], [
        [h["name"], h["batch"] + 1, h["status"],
         *([f"{h.get('from_version') or '?'} → {h.get('to_version') or '?'}"]
           if rollback else []),
         h["failed_step"] or h["current_step"], h["exit_code"], h["reason"]]
        for h in job["hosts"]])
    return EXIT_SUCCEEDED


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def servers(settings: Settings, as_json: bool) -> int:
    """The servers of the inventory."""
    listed = settings.api().get("/api/servers")["servers"]
    if as_json:
        print_json(listed)
        return EXIT_SUCCEEDED
    reach = {True: "yes", False: "no", None: "?"}
    table(["SERVER", "ADDRESS", "TAGS", "VERSION", "LAST JOB", "REACHABLE"], [
        [s["name"], f"{s['host']}:{s['port']}", ",".join(s["tags"]), s["version"],
         f"#{s['last_job_id']} {s['last_status']}" if s["last_job_id"] else "",
         reach.get(s["reachable"], "?")] for s in listed])
    return EXIT_SUCCEEDED


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def runbooks(settings: Settings, as_json: bool) -> int:
    """The runbooks, with their parameters."""
    listed = settings.api().get("/api/runbooks")["runbooks"]
    if as_json:
        print_json(listed)
        return EXIT_SUCCEEDED
    table(["RUNBOOK", "PARAMS", "STEPS", "DESCRIPTION"], [
        [b["name"], " ".join(f"{n}{'' if p['required'] else '?'}"
                             for n, p in b["params"].items()),
         len(b["steps"]), b["description"]] for b in listed])
    return EXIT_SUCCEEDED
