"""PostgreSQL as Patchbay's database, on a private server (``stack.postgres``): every
migration runs there (and back down), the schema it builds is the models' schema, the
event log's key holds, and a slow query under eventlet leaves other greenlets running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Base, Job, JobEvent
from tests.conftest import PROJECT

MIGRATIONS = str(PROJECT / "migrations")


@pytest.fixture
def database(private_postgres) -> Iterator[str]:
    """A new, empty database on the session's private server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = private_postgres.create_database(name)
    yield url
    private_postgres.drop_database(name)


@pytest.fixture
def pg_app(database: str, tmp_path: Path):
    from app import create_app

    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database,
                       "INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test",
                       "ASYNC_MODE": "threading"})


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return ScriptDirectory.from_config(config).get_current_head()


def schema_drift(url: str) -> list:
    """What autogenerate would change to make the database match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_flask_db_upgrade_runs_every_migration_and_builds_the_models_schema(pg_app, database):
    from flask_migrate import upgrade

    with pg_app.app_context():
        upgrade(directory=MIGRATIONS)

    engine = create_engine(database)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")
                                  ).scalar_one() == head_revision()
    engine.dispose()
    assert set(Base.metadata.tables) <= tables(database)
    assert schema_drift(database) == []


def test_every_migration_goes_down_and_up_again(pg_app, database):
    from flask_migrate import downgrade, upgrade

    with pg_app.app_context():
        upgrade(directory=MIGRATIONS)
        downgrade(directory=MIGRATIONS, revision="base")
        assert tables(database) == {"alembic_version"}
        upgrade(directory=MIGRATIONS)

    assert set(Base.metadata.tables) <= tables(database)
    assert schema_drift(database) == []


def test_a_job_event_seq_is_unique_per_job(pg_app, database):
    from flask_migrate import upgrade

    with pg_app.app_context():
        upgrade(directory=MIGRATIONS)
    engine = create_engine(database)
    with Session(engine) as session:
        first, second = Job(runbook="basic"), Job(runbook="basic")
        session.add_all([first, second])
        session.flush()
        session.add_all([JobEvent(job_id=first.id, seq=1, ts=1.0, type="job_started"),
                         JobEvent(job_id=second.id, seq=1, ts=1.0, type="job_started")])
        session.commit()  # the same seq in another job is fine

        session.add(JobEvent(job_id=first.id, seq=1, ts=2.0, type="output"))
        with pytest.raises(IntegrityError):
            session.commit()
    engine.dispose()


def test_a_server_answering_with_nul_bytes_fails_alone_and_the_job_finishes(pg_app, tmp_path):
    """SSH's error quotes the server's garbled banner, NUL bytes included: PostgreSQL
    text refuses NUL, and the event writer (which retries until the database takes
    the events) would retry forever, holding up every job of the console."""
    import socket
    import threading

    from flask_migrate import upgrade

    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory
    from tests.conftest import TEST_RUNBOOKS, write_inventory
    from tests.support.engine_world import build_world

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def babble() -> None:
        with listener, listener.accept()[0] as connection:
            connection.sendall(b"game\x00server\r\n" * 120)  # paramiko reads 100 lines
            connection.recv(100)

    threading.Thread(target=babble, daemon=True).start()
    inventory = write_inventory(tmp_path / "inventory.yml", [
        {"name": "game1", "host": "127.0.0.1", "port": listener.getsockname()[1],
         "user": "deploy"}])
    with pg_app.app_context():
        upgrade(directory=MIGRATIONS)
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    world = build_world(pg_app, TEST_RUNBOOKS, connect_timeout=10)

    job = world.wait_finished(world.engine.start(
        world.engine.plan("basic", {"message": "hi"}, ["game1"]), None), timeout=60)

    assert job.status == "failed"
    host = job.hosts[0]
    assert host.status == "failed"
    assert "game\ufffdserver" in host.reason, host.reason
    finished = [e for e in world.events(job.id) if e["type"] == "host_finished"]
    assert "game\x00server" in finished[0]["data"]["reason"]  # the log keeps what was said


# A slow query in one greenlet while another ticks every 20 ms; prints the longest
# pause between ticks and how many ticks happened during the query. ``patchbay`` patches
# like the console does (async_mode.py); ``bare`` is eventlet alone.
GREEN_CHECK = """
import json, sys, time
if sys.argv[2] == "patchbay":
    import async_mode
    async_mode.monkey_patch()
else:
    import eventlet
    eventlet.monkey_patch()
import eventlet
from eventlet.event import Event
from sqlalchemy import create_engine, text

engine = create_engine(sys.argv[1])
with engine.connect() as connection:
    connection.execute(text("SELECT 1"))  # connected before the clock starts
done, ticks, query = Event(), [], {}

def ticker():
    while not done.ready():
        ticks.append(time.monotonic())
        eventlet.sleep(0.02)

def slow():
    query["start"] = time.monotonic()
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_sleep(1)"))
    query["end"] = time.monotonic()
    done.send()

eventlet.spawn(ticker)
eventlet.sleep(0.1)
eventlet.spawn(slow).wait()
during = [t for t in ticks if query["start"] <= t <= query["end"]]
points = [query["start"], *during, query["end"]]
print(json.dumps({"ticks": len(during), "query": query["end"] - query["start"],
                  "longest_pause": max(b - a for a, b in zip(points, points[1:]))}))
"""


def run_patched(script: str, url: str, patching: str) -> dict:
    """Run ``script`` in a process of its own (``patching``: "patchbay" or "bare");
    its last line of output, as JSON."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PSYCOPG_WAIT_FUNC", "PATCHBAY_ASYNC_MODE")}
    done = subprocess.run([sys.executable, "-c", script, url, patching], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def green_check(url: str, patching: str) -> dict:
    return run_patched(GREEN_CHECK, url, patching)


def test_a_slow_query_does_not_freeze_other_greenlets_under_eventlet(database):
    result = green_check(database, "patchbay")

    assert result["query"] >= 1.0
    assert result["longest_pause"] < 0.5, result
    assert result["ticks"] >= 10, result


def test_without_the_green_wait_psycopg_would_freeze_every_greenlet(database):
    """The check above can fail: psycopg's own wait (in C) stops the whole process."""
    result = green_check(database, "bare")

    assert result["longest_pause"] >= 0.9, result


# A greenlet waits on a socket that another closes (as paramiko closes its transport's
# socket under its reader), then psycopg connects at once: libpq, in C, gets the freed
# descriptor number. Prints whether the connection worked and which number it got.
STALE_WAIT = """
import json, socket, sys
if sys.argv[2] == "patchbay":
    import async_mode
    async_mode.monkey_patch()
else:
    import eventlet
    eventlet.monkey_patch()
import eventlet
import psycopg

url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://", 1)
a, b = socket.socketpair()
freed = a.fileno()
told = []

def reader():  # paramiko's transport reader takes a closed socket as the end
    try:
        a.recv(10)
    except (EOFError, OSError) as exc:
        told.append(type(exc).__name__)

waiter = eventlet.spawn(reader)
eventlet.sleep(0)  # the reader now waits on a
a.close()
try:
    with psycopg.connect(url, connect_timeout=10) as connection:
        got = connection.pgconn.socket
        connection.execute("SELECT 1")
    waiter.wait()
    print(json.dumps({"ok": True, "fd": got, "freed": freed, "reader": told}))
except Exception as exc:  # noqa: BLE001 - reported to the test
    print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300],
                      "freed": freed}))
"""


def stale_wait(url: str, patching: str) -> dict:
    return run_patched(STALE_WAIT, url, patching)


def test_a_connection_on_a_descriptor_freed_under_a_waiting_greenlet_goes_ahead(database):
    result = stale_wait(database, "patchbay")

    assert result == {"ok": True, "fd": result["freed"], "freed": result["freed"],
                      "reader": ["EOFError"]}


def test_without_the_reclaim_that_connection_fails_as_it_did_in_ci(database):
    """The check above can fail: eventlet alone refuses the second wait on the number."""
    result = stale_wait(database, "bare")

    assert result["ok"] is False
    assert "Second simultaneous read on fileno" in result["error"], result
