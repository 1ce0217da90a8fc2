"""The payload of docs/webhooks.md ("Payload"): what every format is made from. Built
once per event, from the job's and the host's rows as they are when the event is
written, so every webhook of an event tells the same story."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models import Job, JobHost
from services.job_titles import ROLLBACK, build_moves, job_title, moves_words


def job_link(public_url: str | None, job_id: int) -> str | None:
    return f"{public_url.rstrip('/')}/jobs/{job_id}" if public_url else None


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment else None


def job_part(job: Job) -> dict[str, Any]:
    """The ``job`` object of a payload: with its ``title`` and, for a rollback, each
    server's build before and after (``builds``, ``builds_words``; services/job_titles.py)."""
    builds = build_moves((host.name, host.from_version, host.to_version)
                         for host in sorted(job.hosts, key=lambda host: host.position)) \
        if job.kind == ROLLBACK else []
    return {"id": job.id, "runbook": job.runbook, "kind": job.kind, "status": job.status,
            "created_by": job.created_by.username if job.created_by else None,
            "created_at": _stamp(job.created_at), "finished_at": _stamp(job.finished_at),
            "rerun_of": job.rerun_of_id, "title": job_title(job.kind, job.runbook),
            "builds": builds, "builds_words": moves_words(builds) if builds else ""}


def host_part(host: JobHost | None, event: dict[str, Any]) -> dict[str, Any]:
    """The ``host`` object of a ``host_failed`` payload."""
    data = event["data"]
    if host is None:  # not in the plan's rows (never expected): what the event says
        return {"name": event["host"], "status": data.get("status"),
                "failed_step": data.get("failed_step"), "exit_code": data.get("exit_code"),
                "reason": data.get("reason"), "batch": None, "started_at": None,
                "finished_at": None, "from_version": None, "to_version": None}
    return {"name": host.name, "status": host.status, "failed_step": host.failed_step,
            "exit_code": host.exit_code, "reason": host.reason, "batch": host.batch,
            "started_at": _stamp(host.started_at), "finished_at": _stamp(host.finished_at),
            "from_version": host.from_version, "to_version": host.to_version}


def build_payload(name: str, delivery: str, event: dict[str, Any], job: dict[str, Any],
                  host: dict[str, Any] | None, url: str | None) -> dict[str, Any]:
    """The JSON body of a delivery (docs/webhooks.md, "Payload")."""
    return {"event": name, "delivery": delivery, "job": job, "host": host,
            "data": event["data"], "seq": event["seq"], "ts": event["ts"], "url": url}
