"""Database models (SQLAlchemy 2.0 style), on a declarative base of their own.

Nothing here imports Flask or its extensions: the engine and its tests use these models
with a plain SQLAlchemy session (``extensions.db`` binds the same base for the web app).

The job event log (``JobEvent``) is the source of truth for what happened; ``Job`` and
``JobHost`` hold the current state derived from it, updated in the same transaction as
the events that change it so the two can never disagree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

ROLES = ("admin", "operator", "viewer")
JOB_STATUSES = ("running", "paused", "succeeded", "failed", "cancelled", "interrupted")
# A live job holds its servers and has an owner node running it; "paused" waits at a
# manual gate between batches for an operator to promote or abort it.
LIVE_JOB_STATUSES = ("running", "paused")
HOST_STATUSES = (
    "pending", "running", "succeeded", "failed", "cancelled", "skipped", "interrupted",
)
FINISHED_HOST_STATUSES = frozenset(HOST_STATUSES) - {"pending", "running"}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_job_uid() -> str:
    """A job's name on its servers (run directories): unique across databases, unlike
    its id, so two consoles never share a run directory."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


class User(Base):
    """A console user. Implements what Flask-Login asks of a user object."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="operator")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class Server(Base):
    __tablename__ = "servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=22)
    user: Mapped[str] = mapped_column(String(64))
    key_path: Mapped[str | None] = mapped_column(String(1024))
    known_hosts: Mapped[str | None] = mapped_column(String(1024))
    # "strict": unknown host keys are refused; "accept-new": recorded on first use.
    host_key_policy: Mapped[str] = mapped_column(String(16), default="strict",
                                                 server_default="strict")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    vars: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_job_id: Mapped[int | None] = mapped_column()
    last_status: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set by the reachability probe (services/fleet.py): did the SSH port accept a TCP
    # connection, when was that checked, and why not.
    reachable: Mapped[bool | None] = mapped_column()
    last_checked: Mapped[datetime | None] = mapped_column()
    reach_error: Mapped[str | None] = mapped_column(String(255))

    def summary(self) -> dict[str, Any]:
        facts = self.facts or {}
        version = facts.get("version")
        return {"name": self.name, "host": self.host, "port": self.port, "tags": self.tags,
                "version": version,
                # "verified": reported after the last step that may change the build;
                # "unverified": a job (version_job_id) may have changed it since.
                "version_state": facts.get("version_state", "verified")
                if version is not None else None,
                "version_job_id": facts.get("version_job_id") if version is not None else None,
                # The build it reported before its current one (a rollback's target).
                "previous_version": facts.get("previous_version"),
                "last_job_id": self.last_job_id, "last_status": self.last_status,
                "reachable": self.reachable,
                "last_checked": self.last_checked.isoformat() + "Z"
                if self.last_checked else None}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_job_uid)
    runbook: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="runbook", server_default="runbook")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    strategy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    last_seq: Mapped[int] = mapped_column(default=0)
    node_id: Mapped[str | None] = mapped_column(String(255))
    # Set by any console process; the process running the job polls it, so a job can
    # be cancelled from every node that shares the database.
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default="0")
    rerun_of_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    # A paused job (status "paused", at a manual gate) is promoted or aborted by any
    # console process setting this ("promote" or "abort"); its owner polls it, as it
    # polls cancel_requested, and clears it with the job_resumed/job_aborted event.
    gate_request: Mapped[str | None] = mapped_column(String(16))
    gate_request_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The build the job installs (its runbook's version_param), for the servers page.
    target_version: Mapped[str | None] = mapped_column(String(64))

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    reruns: Mapped[list[Job]] = relationship(order_by="Job.id", viewonly=True)
    hosts: Mapped[list[JobHost]] = relationship(
        back_populates="job", order_by="JobHost.position", cascade="all, delete-orphan"
    )

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "runbook": self.runbook,
            "kind": self.kind,
            "params": self.params,
            "strategy": self.strategy,
            "status": self.status,
            "created_by": self.created_by.username if self.created_by else None,
            "created_at": self.created_at.isoformat() + "Z",
            "finished_at": self.finished_at.isoformat() + "Z" if self.finished_at else None,
            "last_seq": self.last_seq,
            "rerun_of": self.rerun_of_id,
            "reruns": [job.id for job in self.reruns],
            "target_version": self.target_version,
            "hosts": [host.summary() for host in self.hosts],
        }


class JobHost(Base):
    """One server's part in one job."""

    __tablename__ = "job_hosts"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    server_id: Mapped[int | None] = mapped_column(ForeignKey("servers.id"))
    name: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(default=0)
    batch: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    current_step: Mapped[str | None] = mapped_column(String(128))
    failed_step: Mapped[str | None] = mapped_column(String(128))
    exit_code: Mapped[int | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # The rendered commands this server runs ({"target": ..., "steps": [...],
    # "on_failure": [...]}): a console that resumes the job after a restart runs what
    # was planned, even if the runbook file changed since.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The build the server reported when the job was recorded, and the one the job
    # installs there (a rollback: the server's own; an update: Job.target_version).
    from_version: Mapped[str | None] = mapped_column(String(64))
    to_version: Mapped[str | None] = mapped_column(String(64))

    job: Mapped[Job] = relationship(back_populates="hosts")

    @validates("reason")
    def _storable_reason(self, _key: str, reason: str | None) -> str | None:
        """PostgreSQL text cannot hold NUL, which an error quoting what a server sent can."""
        return reason.replace("\x00", "\ufffd") if reason else reason

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch": self.batch,
            "status": self.status,
            "current_step": self.current_step,
            "failed_step": self.failed_step,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "started_at": self.started_at.isoformat() + "Z" if self.started_at else None,
            "finished_at": self.finished_at.isoformat() + "Z" if self.finished_at else None,
            "from_version": self.from_version,
            "to_version": self.to_version,
        }


class ServerBuild(Base):
    """A build a server reported at the end of a job there (tasks/events/job_state.py):
    its build history, from which a rollback finds the last good build
    (tasks/planning/build_history.py)."""

    __tablename__ = "server_builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # the job's outcome on the server
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    """One entry of a job's append-only log; ``seq`` runs 1, 2, 3... per job."""

    __tablename__ = "job_events"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[float] = mapped_column()
    type: Mapped[str] = mapped_column(String(32))
    host: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "type": self.type, "host": self.host,
                "data": self.data}


class ServerLock(Base):
    """A server held by a running job. The primary key makes a second holder impossible,
    across processes too."""

    __tablename__ = "server_locks"

    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))


class AuditEntry(Base):
    """Who did what, when and from where (logins, jobs, users, inventory, runbooks)."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(64))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts.isoformat() + "Z", "username": self.username,
                "action": self.action, "target": self.target, "detail": self.detail,
                "remote_addr": self.remote_addr}


class ApiToken(Base):
    """A personal API token: ``Authorization: Bearer <token>`` acts as its user, with
    the user's role or the lower ``role`` it was made with. Only a hash is stored (the
    token is shown once); ``prefix`` (its first characters) names it on pages."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str | None] = mapped_column(String(16))  # None: the user's own role
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_from: Mapped[str | None] = mapped_column(String(64))  # None: the CLI on the host

    user: Mapped[User] = relationship()

    def summary(self) -> dict[str, Any]:
        def stamp(moment: datetime | None) -> str | None:
            return moment.isoformat() + "Z" if moment else None

        return {"id": self.id, "name": self.name, "prefix": self.prefix, "role": self.role,
                "created_at": stamp(self.created_at), "expires_at": stamp(self.expires_at),
                "last_used_at": stamp(self.last_used_at),
                "revoked_at": stamp(self.revoked_at), "created_from": self.created_from}


class LoginSession(Base):
    """One browser login. The signed session cookie holds a random key; only its hash is
    stored here. Ending the row (logout, a password reset, a role change, disabling the
    user, or its idle or absolute lifetime running out) ends the session everywhere: a
    copied cookie stops working on its next request and its sockets are dropped."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
    end_reason: Mapped[str | None] = mapped_column(String(32))
    remote_addr: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship()


class Node(Base):
    """A console process sharing this database: its heartbeat says it is alive.

    ``Job.node_id`` names the node that owns (runs, and alone writes the events of) a
    running job; a node whose ``last_seen`` is older than ``PATCHBAY_NODE_TIMEOUT`` is
    dead, and a live one takes its running jobs over (see :mod:`tasks.nodes.membership`).
    """

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    address: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    # What this node last saw of the services it needs, written with each heartbeat
    # (see tasks.nodes.health): {"database": {...}, "message queue": {...}}, each with
    # down_since, last_outage_at (ISO times, UTC) and last_outage_seconds.
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Webhook(Base):
    """An admin's webhook: a URL that receives a signed JSON POST for each of ``events``
    (see docs/webhooks.md). ``secret`` signs the deliveries; it is stored because it
    must be, and never shown again (``summary`` says only whether one is set)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str | None] = mapped_column(String(256))
    format: Mapped[str] = mapped_column(String(16), default="json")  # or "slack"
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    created_by: Mapped[User | None] = relationship()

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "events": list(self.events),
                "format": self.format, "has_secret": bool(self.secret),
                "created_by": self.created_by.username if self.created_by else None,
                "created_at": self.created_at.isoformat() + "Z"}


class WebhookDelivery(Base):
    """One event for one webhook: its body, built when the event was written (in the
    same transaction), and where its sending stands. ``status`` is ``pending`` (due at
    ``next_attempt_at``), ``sending`` (claimed by ``claimed_by`` until
    ``next_attempt_at``; ``claim`` fences the result), ``delivered`` or ``given_up``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: uuid.uuid4().hex)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    seq: Mapped[int | None] = mapped_column()
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(255))
    delivered_at: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claim: Mapped[str | None] = mapped_column(String(32))

    def summary(self) -> dict[str, Any]:
        def stamp(moment: datetime | None) -> str | None:
            return moment.isoformat() + "Z" if moment else None

        return {"id": self.id, "delivery": self.uid, "event": self.event,
                "job_id": self.job_id, "seq": self.seq, "status": self.status,
                "attempts": self.attempts, "status_code": self.last_status_code,
                "error": self.last_error, "created_at": stamp(self.created_at),
                "last_attempt_at": stamp(self.last_attempt_at),
                "next_attempt_at": stamp(self.next_attempt_at),
                "delivered_at": stamp(self.delivered_at)}


Index("ix_jobs_status", Job.status)
Index("ix_jobs_created_at", Job.created_at)
Index("ix_jobs_runbook_id", Job.runbook, Job.id)  # the last jobs of a runbook
Index("ix_jobs_node_status", Job.node_id, Job.status)
Index("ix_server_builds_server_id", ServerBuild.server_id, ServerBuild.id)
Index("ix_job_events_job_host_seq", JobEvent.job_id, JobEvent.host, JobEvent.seq)
