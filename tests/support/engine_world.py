"""An engine wired to a real database and recording publisher, for engine tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from models import Job, JobEvent
from tasks.engine import EngineSettings, JobEngine
from tasks.events.writer import EventLog
from tasks.planning.runbook_store import RunbookStore


def engine_database(directory, hosts: list[str]) -> str:
    """A fresh database (``tests/support/databases.py``) with the engine's tables and one
    inventory server per name of ``hosts`` (10.0.0.1, .2, ...); returns its URL."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from models import Base, Server
    from tests.support.databases import fresh_database_url

    url = fresh_database_url(directory)
    db = create_engine(url)
    Base.metadata.create_all(db)
    with Session(db) as session:
        session.add_all(Server(name=name, host=f"10.0.0.{i}", port=22, user="deploy")
                        for i, name in enumerate(hosts, start=1))
        session.commit()
    db.dispose()
    return url


def start_thread(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def engine_process(database: str, runbooks: dict, transport, **settings: Any
                   ) -> tuple[EngineWorld, Any]:
    """An engine on ``database`` as its own "process" (its own SQLAlchemy engine and
    event log, a publisher recording what it sends); returns the world and the
    SQLAlchemy engine to dispose of."""
    from sqlalchemy import create_engine

    db = create_engine(database)
    sessions = sessionmaker(bind=db, expire_on_commit=False)
    published: list[dict[str, Any]] = []
    lock = threading.Lock()

    def publish(job_id: int, owner_id: int | None, events: list[dict]) -> None:
        with lock:
            published.extend({"job_id": job_id, **event} for event in events)

    engine = JobEngine(db_sessions=sessions, events=EventLog(sessions, publish, start_thread),
                       runbooks=lambda: runbooks, start_task=start_thread,
                       settings=EngineSettings(**settings), transport=transport)
    return EngineWorld(engine, sessions, published), db


@dataclass
class EngineWorld:
    engine: JobEngine
    sessions: sessionmaker
    published: list[dict[str, Any]] = field(default_factory=list)

    def wait_finished(self, job_id: int, timeout: float = 60) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            with self.sessions() as session:
                job = session.get(Job, job_id)
                if job.status not in ("running", "paused") \
                        and not self.engine.is_running_here(job_id):
                    job.hosts  # noqa: B018 - load while the session is open
                    return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still running after {timeout} s")
            time.sleep(0.05)  # polling interval of a deadline loop

    def wait_for(self, job_id: int, predicate, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll the job's log until ``predicate(events)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(job_id)
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met; last events: {events[-5:]}")
            time.sleep(0.05)  # polling interval of a deadline loop

    def events(self, job_id: int) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)
                                   .order_by(JobEvent.seq))
            return [row.to_dict() for row in rows]


def build_world(app, runbook_dir, transport=None, **settings: Any) -> EngineWorld:
    from extensions import db

    with app.app_context():
        sessions = sessionmaker(bind=db.engine, expire_on_commit=False)
    published: list[dict[str, Any]] = []
    lock = threading.Lock()

    def publish(job_id: int, owner_id: int | None, events: list[dict[str, Any]]) -> None:
        with lock:
            published.extend({"job_id": job_id, **event} for event in events)

    engine = JobEngine(
        db_sessions=sessions,
        events=EventLog(sessions, publish, start_thread),
        runbooks=RunbookStore(runbook_dir).load,
        start_task=start_thread,
        settings=EngineSettings(**{"kill_grace": 2, "connect_timeout": 5, **settings}),
        transport=transport,
    )
    return EngineWorld(engine, sessions, published)
