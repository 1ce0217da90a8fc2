"""Showing a job's log: ``patchbay logs`` (its pages, once), and following a job live
until it ends (``logs --follow``, ``run --follow``, ``exec --follow``)."""

from __future__ import annotations

import click

from patchbay_cli.exits import (
    EXIT_FAILED,
    EXIT_OF_STATUS,
    EXIT_STOPPED,
    EXIT_SUCCEEDED,
    notice,
    refusals,
)
from patchbay_cli.follow import PAGE, Follower
from patchbay_cli.output import make_renderer
from patchbay_cli.plain import PlainRenderer
from patchbay_cli.settings import Settings


def follow_job(settings: Settings, job_id: int, host: str | None = None) -> int:
    """Show a job until it ends; its exit status (130 after Ctrl-C)."""
    api = settings.api()
    job = api.job(job_id)
    renderer = make_renderer(job_id, host=host, plain=settings.plain)
    renderer.begin(job, f"{api.url}/jobs/{job_id}")
    follower = Follower(api, settings.token, job_id, renderer, notice,
                        reconnect_timeout=settings.reconnect_timeout)
    try:
        try:
            finished = follower.run()
        finally:
            renderer.close()  # also on a refusal: a terminal gets its cursor back
    except KeyboardInterrupt:
        notice(f"stopped following job #{job_id}; it goes on running. Follow it again: "
               f"patchbay logs {job_id} --follow; cancel it: patchbay cancel {job_id}")
        return EXIT_STOPPED
    return EXIT_OF_STATUS.get(str(finished.get("status")), EXIT_FAILED)


@click.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.option("--follow", "-f", is_flag=True,
              help="Go on showing it live until it ends; exit with its status.")
@click.option("--host", metavar="SERVER", help="Only this server's lines.")
@click.pass_obj
@refusals
def logs(settings: Settings, job_id: int, follow: bool, host: str | None) -> int:
    """Print a job's log; with --follow, live to its end."""
    if follow:
        return follow_job(settings, job_id, host)
    api = settings.api()
    job = api.job(job_id)
    renderer = PlainRenderer(job_id, host=host)
    renderer.begin(job, f"{api.url}/jobs/{job_id}")
    after = 0
    while True:
        events = api.events(job_id, after, PAGE, host=host)
        renderer.show(events)
        if len(events) < PAGE:
            break
        after = events[-1]["seq"]
    if job["status"] in ("pending", "running", "paused"):
        notice(f"job #{job_id} is {job['status']}; `patchbay logs {job_id} --follow` "
               "shows the rest")
    return EXIT_SUCCEEDED
