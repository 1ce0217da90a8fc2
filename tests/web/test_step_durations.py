"""Each step's usual duration, per server, from earlier jobs of the runbook
(services/step_durations.py) on a real database file, and the job page that carries it."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from models import Job, JobEvent, JobHost
from services.step_durations import SAMPLE_JOBS, usual_step_durations


def add_job(session, runbook: str, status: str, steps: dict[str, dict[str, float]],
            kind: str = "runbook", extra: list[dict] = ()) -> int:
    """A job of ``runbook`` whose servers finished ``steps`` ({host: {step: seconds}})."""
    job = Job(runbook=runbook, kind=kind, status=status)
    session.add(job)
    session.flush()
    seq = 0
    for position, (host, durations) in enumerate(steps.items()):
        session.add(JobHost(job_id=job.id, name=host, position=position, status="succeeded"))
        for index, (step, seconds) in enumerate(durations.items()):
            seq += 1
            session.add(JobEvent(job_id=job.id, seq=seq, ts=float(seq), type="step_finished",
                                 host=host, data={"step": step, "index": index,
                                                  "phase": "steps", "status": "ok",
                                                  "exit_code": 0, "duration": seconds}))
    for data in extra:
        seq += 1
        session.add(JobEvent(job_id=job.id, seq=seq, ts=float(seq), type="step_finished",
                             host="h01", data=data))
    job.last_seq = seq
    session.commit()
    return job.id


def test_medians_per_step_and_per_server_of_the_earlier_finished_jobs(app):
    from extensions import db

    with app.app_context():
        session = db.session
        add_job(session, "deploy", "succeeded", {"h01": {"download": 10, "start": 1},
                                                 "h02": {"download": 30, "start": 2}})
        add_job(session, "deploy", "failed", {"h01": {"download": 12, "start": 3},
                                              "h02": {"download": 31}},
                extra=[{"step": "start", "phase": "steps", "status": "failed", "duration": 99},
                       {"step": "rollback", "phase": "on_failure", "status": "ok",
                        "duration": 50}])
        add_job(session, "deploy", "succeeded", {"h01": {"download": 14, "start": 5}})
        add_job(session, "other", "succeeded", {"h01": {"download": 500}})
        add_job(session, "deploy", "succeeded", {"h01": {"download": 600}}, kind="adhoc")
        running = add_job(session, "deploy", "running", {"h01": {"download": 700}})
        current = add_job(session, "deploy", "running", {})
        later = add_job(session, "deploy", "succeeded", {"h01": {"download": 800}})

        usual = usual_step_durations(session, "deploy", "runbook", current, ["h01", "h03"])

    assert running < current < later
    assert usual == {"jobs": 3, "steps": {
        # Across servers: 10, 12, 14, 30, 31; h01 alone: 10, 12, 14.
        "download": {"seconds": 14.0, "runs": 5, "hosts": {"h01": 12.0}},
        # The failed start and the on_failure rollback are not a step's usual time.
        "start": {"seconds": 2.5, "runs": 4, "hosts": {"h01": 3.0}},
    }}


def test_only_the_last_jobs_count_and_adhoc_commands_get_no_history(app):
    from extensions import db

    with app.app_context():
        session = db.session
        for _ in range(3):
            add_job(session, "deploy", "succeeded", {"h01": {"download": 1000}})
        for _ in range(SAMPLE_JOBS):
            add_job(session, "deploy", "succeeded", {"h01": {"download": 5}})
        current = add_job(session, "deploy", "running", {})

        usual = usual_step_durations(session, "deploy", "runbook", current, ["h01"])
        adhoc = usual_step_durations(session, "deploy", "adhoc", current, ["h01"])
        first = usual_step_durations(session, "new-runbook", "runbook", current, ["h01"])

    assert usual == {"jobs": SAMPLE_JOBS, "steps": {
        "download": {"seconds": 5.0, "runs": SAMPLE_JOBS, "hosts": {"h01": 5.0}}}}
    assert adhoc == first == {"jobs": 0, "steps": {}}


def test_the_job_page_carries_the_usual_step_durations(app, client, auth):
    from extensions import db

    auth.create()
    auth.login()
    with app.app_context():
        add_job(db.session, "basic", "succeeded", {"h01": {"greet": 4, "count": 8},
                                                   "h02": {"greet": 6, "count": 9}})
        current = add_job(db.session, "basic", "running", {})
        db.session.add(JobHost(job_id=current, name="h02", status="pending"))
        db.session.commit()
        assert db.session.scalar(select(Job.status).where(Job.id == current)) == "running"

    page = client.get(f"/jobs/{current}").get_data(as_text=True)

    found = re.search(r'<script type="application/json" id="usual-data">(.*?)</script>', page)
    assert found, "the job page has no usual-data"
    assert json.loads(found.group(1)) == {"jobs": 1, "steps": {
        "greet": {"seconds": 5.0, "runs": 2, "hosts": {"h02": 6.0}},
        "count": {"seconds": 8.5, "runs": 2, "hosts": {"h02": 9.0}},
    }}
