"""A console process killed mid-job resumes the job when it starts again: real process,
real OpenSSH servers, real database file."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from models import Job, JobEvent, JobHost
from tests.conftest import write_inventory
from tests.support.waiting import wait_until

# `make test` runs these again under gevent, and again on PostgreSQL
pytestmark = [pytest.mark.asyncmode, pytest.mark.postgres]


@pytest.fixture
def console(live_server_factory, sshd_fleet, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", sshd_fleet.inventory_entries())
    return live_server_factory(inventory=inventory)


class Database:
    """Reads the console's own database file, as any other process could."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def events(self, job_id: int) -> list[dict]:
        with Session(self.engine) as session:
            return [row.to_dict() for row in session.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))]

    def job(self, job_id: int) -> tuple[Job, dict[str, JobHost]]:
        with Session(self.engine, expire_on_commit=False) as session:
            job = session.get(Job, job_id)
            return job, {host.name: host for host in job.hosts}


def lines_of(events: list[dict], host: str, stream: str = "stdout") -> list[str]:
    return [line for e in events if e["type"] == "output" and e["host"] == host
            and e["data"]["stream"] == stream for line in e["data"]["lines"]]


def start_job(console, payload: dict) -> int:
    http = console.login()
    client = console.socket(http)
    ack = client.call("job:start", payload, timeout=10)
    client.disconnect()
    assert ack["ok"], ack
    return ack["job_id"]


def test_a_console_killed_mid_job_resumes_it_and_every_line_arrives_once(console, sshd_fleet):
    database = Database(console.env["DATABASE_URL"])
    names = [host.name for host in sshd_fleet.hosts]
    job_id = start_job(console, {"runbook": "numbered", "params": {"lines": "200"},
                                 "servers": names,
                                 "strategy": {"parallel": 8, "batches": [4]}})
    first_batch, second_batch = names[:4], names[4:]
    wait_until(lambda: all(len(lines_of(database.events(job_id), name)) >= 20
                           for name in first_batch), timeout=60, what="output stored")

    console.kill9()
    before = database.events(job_id)
    console.start()
    wait_until(lambda: database.job(job_id)[0].status != "running", timeout=120,
               what="the resumed job to finish")

    job, hosts = database.job(job_id)
    events = database.events(job_id)
    assert job.status == "succeeded"
    assert {host.status for host in hosts.values()} == {"succeeded"}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[:len(before)] == before  # what was stored before the crash stays
    for name in names:
        assert lines_of(events, name) == [f"line {i}" for i in range(1, 201)] + ["counted"]
    recovered = next(e["seq"] for e in events if e["type"] == "job_recovered")
    assert not any(e["type"] == "host_started" and e["host"] in second_batch
                   for e in before), "the second batch had not started before the crash"
    assert [e["data"]["batch"] for e in events
            if e["type"] == "batch_started" and e["seq"] > recovered] == [1]


def test_steps_that_ended_while_the_console_was_down_are_collected(console, sshd_fleet):
    database = Database(console.env["DATABASE_URL"])
    ok_host, failing_host = sshd_fleet.hosts[0], sshd_fleet.hosts[1]
    releases = [host.root / "release" for host in (ok_host, failing_host)]
    job_id = start_job(console, {"runbook": "handoff", "params": {"fail_on": failing_host.name},
                                 "servers": [ok_host.name, failing_host.name]})
    try:
        wait_until(lambda: all(lines_of(database.events(job_id), host.name) == ["holding"]
                               for host in (ok_host, failing_host)),
                   what="both steps holding")
        console.kill9()
        for release in releases:
            release.touch()
        wait_until(lambda: all(list((host.root / ".patchbay" / "runs").glob(
            f"*/{host.name}/0.status")) for host in (ok_host, failing_host)),
                   what="both steps ended on their servers")
        console.start()
        wait_until(lambda: database.job(job_id)[0].status != "running", timeout=60,
                   what="the resumed job to finish")
    finally:
        for release in releases:
            release.unlink(missing_ok=True)

    job, hosts = database.job(job_id)
    events = database.events(job_id)
    ok, failed = hosts[ok_host.name], hosts[failing_host.name]
    assert job.status == "failed"
    assert ok.status == "succeeded"
    assert lines_of(events, ok_host.name) == ["holding", "released", "after the hold"]
    assert (failed.status, failed.failed_step, failed.exit_code) == ("failed", "hold", 3)
    assert lines_of(events, failing_host.name) == ["holding", "released", "rolled back"]
    assert lines_of(events, failing_host.name, "stderr") == ["failing on purpose"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert any(e["type"] == "job_recovered" for e in events)
    for host in (ok_host, failing_host):
        assert not (host.root / ".patchbay" / "runs" / job.uid / host.name).exists(), \
            "a finished server's run directory is removed"
