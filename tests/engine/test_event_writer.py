"""The event writer on a real database: a transient failure is waited out, an event the
database refuses for good is stored in a shape it accepts, and the log goes on."""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from models import Job, JobEvent
from tasks.events.write_errors import MARKER, is_transient
from tasks.events.writer import EventLog
from tests.support.engine_world import engine_database, start_thread
from tests.support.waiting import wait_until


@pytest.fixture
def event_log(tmp_path):
    url = engine_database(tmp_path, ["h01"])
    db = create_engine(url)
    sessions = sessionmaker(bind=db, expire_on_commit=False)
    with Session(db) as session:
        job = Job(runbook="ticker")
        session.add(job)
        session.commit()
        job_id = job.id
    published: list[dict] = []
    lock = threading.Lock()

    def publish(job_id: int, owner_id, events: list[dict]) -> None:
        with lock:
            published.extend(events)

    log = EventLog(sessions, publish, start_thread)
    log.open_job(job_id, None)
    yield log, job_id, sessions, published, url
    db.dispose()


def stored(sessions, job_id: int) -> list[JobEvent]:
    with sessions() as session:
        return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)
                                    .order_by(JobEvent.seq)))


@pytest.mark.postgres  # `make test` runs it again on PostgreSQL
def test_an_event_the_database_refuses_for_good_is_stored_marked_and_the_log_goes_on(
        event_log, caplog):
    log, job_id, sessions, published, _ = event_log
    log.append(job_id, "job_started", data={"hosts": ["h01"]})
    # A value the JSON column cannot encode: the same on every retry (it used to stall
    # the node's whole event log, retried forever).
    log.append(job_id, "output", "h01", {"stream": "stdout", "lines": ["ok"],
                                         "extra": object()})
    log.append(job_id, "output", "h01", {"stream": "stdout", "lines": ["after"]})
    log.append(job_id, "job_finished", data={"status": "succeeded"})

    assert log.wait_written(timeout=30), "the writer stalled on the refused event"
    rows = stored(sessions, job_id)
    assert [row.seq for row in rows] == [1, 2, 3, 4]
    assert MARKER in rows[1].data and rows[1].data["lines"] == ["ok"]
    assert rows[2].data == {"stream": "stdout", "lines": ["after"]}
    assert [e["seq"] for e in published] == [1, 2, 3, 4]
    assert MARKER in published[1]["data"]  # watchers get what was stored
    with sessions() as session:
        assert session.get(Job, job_id).status == "succeeded"
    assert "event 2 (output) refused by the database" in caplog.text


def test_a_locked_database_is_waited_out_and_nothing_is_lost(event_log, caplog):
    """SQLite's write lock held by another connection (the main pass only)."""
    log, job_id, sessions, _, url = event_log
    caplog.set_level(logging.WARNING, logger="tasks.events.writer")
    blocker = create_engine(url, connect_args={"timeout": 0.1})
    held = blocker.raw_connection()
    held.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        log.append(job_id, "job_started", data={})
        log.append(job_id, "output", "h01", {"stream": "stdout", "lines": ["x"]})
        wait_until(lambda: "retrying in" in caplog.text,
                   what="the writer to meet the lock and retry")
    finally:
        held.rollback()
        held.close()
        blocker.dispose()
    assert log.wait_written(timeout=30)
    assert [(row.seq, MARKER in row.data) for row in stored(sessions, job_id)] == [
        (1, False), (2, False)]


def test_transient_and_permanent_errors_are_told_apart():
    from sqlalchemy import exc

    class Orig(Exception):
        def __init__(self, sqlstate: str | None) -> None:
            super().__init__("boom")
            self.sqlstate = sqlstate

    def db_error(kind, sqlstate=None):
        return kind("INSERT ...", {}, Orig(sqlstate))

    assert is_transient(db_error(exc.OperationalError, "08006"))  # connection failure
    assert is_transient(db_error(exc.OperationalError, "57P01"))  # admin shutdown
    assert is_transient(db_error(exc.DBAPIError, "40001"))  # serialization
    assert is_transient(db_error(exc.DBAPIError, "40P01"))  # deadlock
    assert is_transient(db_error(exc.OperationalError))  # sqlite: database is locked
    assert not is_transient(db_error(exc.DataError, "22P05"))  # untranslatable character
    assert not is_transient(db_error(exc.IntegrityError, "23505"))
    assert not is_transient(exc.StatementError("cannot encode", "INSERT", {},
                                               TypeError("not JSON serializable")))
    assert not is_transient(TypeError("not JSON serializable"))


def test_a_migration_run_in_the_process_leaves_the_console_s_loggers_working(tmp_path, caplog):
    """Alembic's env.py used to run fileConfig, which disables every logger that exists:
    after any in-process `upgrade`, the event writer's warnings vanished (CI saw it)."""
    from flask_migrate import upgrade

    from app import create_app
    from tests.conftest import PROJECT

    writer_log = logging.getLogger("tasks.events.writer")
    root_level = logging.getLogger().level
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'patchbay.db'}",
                      "INSTANCE_PATH": str(tmp_path / "instance"), "TESTING": True})
    with app.app_context():
        upgrade(directory=str(PROJECT / "migrations"))

    assert not writer_log.disabled
    assert logging.getLogger().level == root_level
    with caplog.at_level(logging.WARNING, logger="tasks.events.writer"):
        writer_log.warning("still heard")
    assert "still heard" in caplog.text
