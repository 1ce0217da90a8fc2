"""Record the fixture the job page's time-left test replays (tests/js/eta.test.mjs).

Runs a runbook of uneven steps (a short prepare, a download that prints its percentage,
an unpack, a quick start, a check) on three real OpenSSH servers on loopback, two at
once, into a real database file: :data:`EARLIER_JOBS` jobs first, then the recorded one.
Writes the recorded job's event log and the per-step medians of the earlier jobs, as
the job page gets them (services/step_durations.py), to
tests/js/fixtures/eta-job.json::

    .venv/bin/python -m tests.support.record_eta [OUT]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from services.step_durations import usual_step_durations
from tasks.planning.inventory import apply_inventory, parse_inventory
from tasks.planning.runbook_store import RunbookStore
from tests.support.engine_world import engine_database, engine_process
from tests.support.sshd_fleet import start_fleet

EARLIER_JOBS = 3
PARALLEL = 2
OUT = Path(__file__).resolve().parents[1] / "js" / "fixtures" / "eta-job.json"

# Each server downloads at its own pace (h01 fastest), printing "downloading: N%".
RUNBOOK = {
    "name": "uneven",
    "description": "Steps of very different lengths, the download reporting its percentage.",
    "steps": [
        {"name": "prepare", "run": "sleep 0.4; echo prepared"},
        {"name": "download", "run": (
            "case {{ host.name }} in *1) pause=0.35 ;; *2) pause=0.45 ;; *) pause=0.55 ;; esac\n"
            "i=0\n"
            "while [ $i -lt 100 ]; do\n"
            "  echo \"downloading build: $i% done\"\n"
            "  sleep $pause\n"
            "  i=$((i + 10))\n"
            "done\n"
            "echo \"downloading build: 100% done\"\n")},
        {"name": "unpack", "run": "sleep 1.5; echo unpacked"},
        {"name": "start", "run": "sleep 0.2; echo started"},
        {"name": "check", "run": "sleep 0.8; echo answers"},
    ],
}


def record(directory: Path) -> dict:
    fleet = start_fleet(directory / "sshd", 3, first_address="127.0.0.181")
    try:
        runbooks = directory / "runbooks"
        runbooks.mkdir()
        (runbooks / "uneven.yml").write_text(yaml.safe_dump(RUNBOOK, sort_keys=False))
        database = engine_database(directory, [])
        world, db = engine_process(database, RunbookStore(runbooks).load(), None,
                                   kill_grace=2, connect_timeout=5)
        with Session(db) as session:
            inventory = yaml.safe_dump({"servers": fleet.inventory_entries()})
            apply_inventory(session, parse_inventory(inventory))
            session.commit()
        names = [host.name for host in fleet.hosts]
        job_ids = []
        for _ in range(EARLIER_JOBS + 1):
            plan = world.engine.plan("uneven", {}, names, strategy={"parallel": PARALLEL})
            job = world.wait_finished(world.engine.start(plan, None), timeout=120)
            if job.status != "succeeded":
                raise RuntimeError(f"job {job.id} ended {job.status}")
            job_ids.append(job.id)
        recorded = job_ids[-1]
        with Session(db) as session:
            usual = usual_step_durations(session, "uneven", "runbook", recorded, names)
        db.dispose()
        return {"runbook": RUNBOOK["name"], "steps": [s["name"] for s in RUNBOOK["steps"]],
                "parallel": PARALLEL, "hosts": names, "usual": usual,
                "events": world.events(recorded)}
    finally:
        fleet.stop()


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUT
    with tempfile.TemporaryDirectory() as directory:
        fixture = record(Path(directory))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {out}: {len(fixture['events'])} events")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
