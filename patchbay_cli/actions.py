"""The commands that act on a running job: ``patchbay cancel``, and at a manual gate
``promote`` and ``abort``; each prints what the console answered."""

from __future__ import annotations

import click

from patchbay_cli.exits import EXIT_SUCCEEDED, refusals
from patchbay_cli.settings import Settings


def _job_action(settings: Settings, job_id: int, action: str) -> int:
    """POST /api/jobs/JOB/ACTION and print what the console answered."""
    answer = settings.api().post(f"/api/jobs/{job_id}/{action}")
    click.echo(answer.get("message") or f"job #{job_id}: {answer.get('status')}")
    return EXIT_SUCCEEDED


@click.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.pass_obj
@refusals
def cancel(settings: Settings, job_id: int) -> int:
    """Cancel a running job (servers not started are skipped, running steps stopped)."""
    return _job_action(settings, job_id, "cancel")


@click.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.pass_obj
@refusals
def promote(settings: Settings, job_id: int) -> int:
    """Promote a job paused at a manual gate: its next batch runs."""
    return _job_action(settings, job_id, "promote")


@click.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.pass_obj
@refusals
def abort(settings: Settings, job_id: int) -> int:
    """Abort a job paused at a manual gate: servers not started are skipped."""
    return _job_action(settings, job_id, "abort")
