"""Application factory: loads config, binds extensions, registers blueprints, socket
handlers and CLI commands, and builds the job engine. No business logic here.

``python app.py`` serves the console (monkey-patching first, see ``async_mode.py``).
"""

from __future__ import annotations

if __name__ == "__main__":  # entry point only: patch before anything else is imported
    import async_mode

    async_mode.monkey_patch()

import os
import warnings
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

import cli
import gc_tuning
from blueprints.api import jobs as api
from blueprints.api import metrics
from blueprints.http import client_address, errors, headers, input_guard, times
from blueprints.http.waiting import register as register_waiting
from blueprints.live import handlers as live
from blueprints.live.handshakes import Handshakes
from blueprints.live.handshakes import install as install_handshake_cap
from blueprints.live.packets import TextPacket
from blueprints.live.publishing import JobPublisher
from blueprints.live.redis_manager import client_manager, start_listening
from blueprints.live.socket_control import LiveSockets, live_sockets_of
from blueprints.pages import admin, auth, downloads, fleet, jobs, tokens, webhooks
from config import PROJECT_DIR, VERSION, load_config
from console_logging import configure_logging
from extensions import csrf, db, limiter, login_manager, migrate, socketio
from instance_files import secure_instance, sqlite_file
from services.audit import record
from services.auth import auth_tokens, login_state, permissions
from services.auth.login_sessions import Lifetimes
from services.auth.login_slowdown import LoginSlowdown, Slowdown
from services.auth.socket_tokens import SocketTokens
from services.commands import Commands
from services.console import EXTENSION as CONSOLE_EXTENSION
from services.console import ConsoleServices, console_services
from services.database_state import EXTENSION as NEW_PATHS
from services.database_state import NewPaths
from services.limiter_recovery import recovery_check
from services.metrics import instrument
from services.retention import RetentionPruner
from services.webhooks import DeliveryWorker, Outbox, WebhookSettings
from services.webhooks.address import AddressPolicy
from serving import serve_console
from tasks.engine import EngineSettings, JobEngine
from tasks.events.writer import EventLog
from tasks.nodes.health import Dependency
from tasks.nodes.membership import Membership, NodeIdentity
from tasks.planning.runbook_store import RunbookStore
from tasks.planning.secrets import SecretBox


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build a Patchbay application; ``config`` overrides defaults and environment."""
    instance = (config or {}).get("INSTANCE_PATH") or os.environ.get("PATCHBAY_INSTANCE_PATH")
    app = Flask(__name__, instance_path=str(Path(instance or PROJECT_DIR / "instance").resolve()))
    # What is made here, for a `flask` command against no database to take back (cli.py).
    new_paths = app.extensions[NEW_PATHS] = NewPaths()
    new_paths.note(Path(app.instance_path))
    load_config(app, config)
    database = sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])
    new_paths.note(*((database.parent, database) if database else ()))
    secure_instance(app.instance_path, app.config["SQLALCHEMY_DATABASE_URI"])
    # Eventlet warns on import that it is in maintenance mode (see async_mode.py).
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    configure_logging(app.config["LOG_LEVEL"])
    services = app.extensions[CONSOLE_EXTENSION] = ConsoleServices(
        session_lifetimes=Lifetimes.from_config(app.config),
        login_slowdown=LoginSlowdown(_login_slowdown_rule(app.config),
                                     lambda: limiter.limiter.storage),
        socket_tokens=SocketTokens())
    queue_health = Dependency("message queue") if app.config["MESSAGE_QUEUE"] else None
    _bind_extensions(app, queue_health)
    _register_doors(app, services)
    cli.register(app)
    with app.app_context():
        _tune_sqlite(db.engine)
        _build_services(app, services, sessionmaker(bind=db.engine, expire_on_commit=False),
                        queue_health)
    return app


def _bind_extensions(app: Flask, queue_health: Dependency | None) -> None:
    """Database, guards (in their order), limiter, login, and Socket.IO."""
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_DIR / "migrations"))
    auth_tokens.register_before_guard(app)  # a bearer token says who you are ...
    permissions.register(app)  # ... before what you may do is checked ...
    auth_tokens.register_after_guard(app)  # ... and before CSRF (cookie sessions only)
    input_guard.register(app)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.user_loader(login_state.load_user)  # every request and socket event
    socketio.init_app(
        app,
        async_mode=app.config["ASYNC_MODE"],
        cors_allowed_origins=app.config["CORS_ALLOWED_ORIGINS"],  # None: same origin only
        # Always given (None = in memory): Flask-SocketIO would otherwise keep the
        # manager of an earlier app built in this process.
        client_manager=client_manager(app.config["MESSAGE_QUEUE"], queue_health),
        max_http_buffer_size=int(app.config["MAX_SOCKET_PAYLOAD"]),
        serializer=TextPacket,  # no bytes are ever sent: skip the search for them
    )
    client_address.register(app)  # X-Forwarded-* believed from the proxies only


def _register_doors(app: Flask, services: ConsoleServices) -> None:
    """The pages, the API, /metrics and the Socket.IO handlers."""
    for blueprint in (auth.bp, jobs.bp, fleet.bp, api.bp, admin.bp, downloads.bp, tokens.bp,
                      webhooks.bp):
        app.register_blueprint(blueprint)
    metrics.register(app)
    headers.register(app)
    times.register(app)  # the utc_time filter
    register_waiting(app)  # waiting_jobs() in templates: the header's waiting jobs
    errors.register(app)
    app.register_error_handler(429, auth.too_many_attempts)
    live.register(socketio)
    handshakes = Handshakes(int(app.config["MAX_HANDSHAKES_PER_ADDRESS"]))
    install_handshake_cap(socketio.server, handshakes)  # capped until logged in
    services.sockets = LiveSockets(handshakes)


def _build_services(app: Flask, services: ConsoleServices, sessions: sessionmaker,
                    queue_health: Dependency | None) -> None:
    """The engine and what runs beside it: commands, nodes, webhooks, retention."""
    engine = services.engine = _build_engine(app, sessions)
    services.commands = Commands(engine, audit=record)
    instrument(engine.events, sessions)  # /metrics counts what the event log writes
    services.membership = Membership(
        sessions, NodeIdentity(str(app.config["NODE_ID"]), app.config["NODE_ADDRESS"],
                               VERSION),
        heartbeat=float(app.config["NODE_HEARTBEAT"]),
        timeout=float(app.config["NODE_TIMEOUT"]),
        take_over=engine.take_over, start_task=socketio.start_background_task,
        queue=queue_health, checks=[recovery_check(limiter)])
    services.webhooks = _build_webhook_sender(app, sessions, services.membership)
    services.retention = RetentionPruner(
        sessions, int(app.config["EVENT_RETENTION_DAYS"]), socketio.start_background_task)


def _build_engine(app: Flask, sessions: sessionmaker) -> JobEngine:
    """The engine, handed its world: sessions, a Socket.IO publisher, a task starter."""

    def abandon(job_id: int) -> None:
        console_services(app).engine.abandon(job_id)

    config = app.config
    return JobEngine(
        db_sessions=sessions,
        events=EventLog(sessions, JobPublisher(sessions), socketio.start_background_task,
                        node_id=str(config["NODE_ID"]), on_fenced=abandon,
                        on_event=Outbox(config["PUBLIC_URL"])),
        runbooks=RunbookStore(config["RUNBOOK_DIR"], on_change=_audit_runbook_change).load,
        start_task=socketio.start_background_task,
        secrets=SecretBox(str(config["SECRET_KEY"])),  # seals job secrets at rest
        settings=EngineSettings.from_config(config),
    )


def _build_webhook_sender(app: Flask, sessions: sessionmaker,
                          membership: Membership) -> DeliveryWorker:
    """This node's webhook sender (docs/webhooks.md); ``start_node`` starts it."""
    config = app.config
    return DeliveryWorker(sessions, str(config["NODE_ID"]), WebhookSettings(
        timeout=float(config["WEBHOOK_TIMEOUT"]),
        retry_base=float(config["WEBHOOK_RETRY_BASE"]),
        retry_max=float(config["WEBHOOK_RETRY_MAX"]),
        give_up_after=float(config["WEBHOOK_GIVE_UP_AFTER"]),
        concurrency=int(config["WEBHOOK_CONCURRENCY"]),
        poll_interval=float(config["WEBHOOK_POLL_INTERVAL"]),
        retention=float(config["WEBHOOK_RETENTION"]),
        user_agent=f"Patchbay-Webhook/{VERSION}",
        addresses=AddressPolicy.from_setting(config["WEBHOOK_ALLOW_NETWORKS"]),
    ), start_task=socketio.start_background_task,
        database=membership.database)  # one outage, one log line


def _audit_runbook_change(changes: dict[str, list[str]]) -> None:
    """Runbook files edited on disk: note when, and what (the editor is not known)."""
    record("runbooks.changed", ", ".join(sum(changes.values(), [])), username="(files)",
           **changes)


def _tune_sqlite(engine: Any) -> None:
    """WAL lets readers (replays, pages) run while the event writer commits."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def start_node(app: Flask) -> None:
    """Join the nodes (heartbeat, takeover watch), start sending webhooks and pruning
    old events, then resume the jobs a dead process of this node left running. Called
    by ``serve`` and ``wsgi.py``, not by tests' apps."""
    services = console_services(app)
    start_listening(socketio.server)  # the message queue, if any: its health from now on
    services.membership.start()
    services.webhooks.start()
    services.retention.start()  # daily, when PATCHBAY_EVENT_RETENTION_DAYS
    socketio.start_background_task(live_sockets_of(services).sweeper.run, app,
                                   _drop_socket, socketio.sleep)
    resumed = services.engine.resume_owned_jobs()
    if resumed:
        app.logger.warning("resuming jobs left running: %s", resumed)
    gc_tuning.tune_after_start_up()


def _drop_socket(sid: str) -> None:
    """A socket whose session ended elsewhere: say why, then close it."""
    socketio.emit("session:ended", {"reason": "session ended"}, to=sid)
    socketio.server.disconnect(sid, ignore_queue=True)


def serve(app: Flask) -> None:
    """Serve the console as one node (see :func:`start_node`)."""
    start_node(app)
    serve_console(app)  # with the slow-client guards (serving.py)


def _login_slowdown_rule(config) -> Slowdown:
    try:
        return Slowdown.from_config(config["LOGIN_ACCOUNT_SLOWDOWN"],
                                    config["LOGIN_SLOWDOWN_MAX_DELAY"])
    except ValueError as error:
        raise RuntimeError("PATCHBAY_LOGIN_ACCOUNT_SLOWDOWN / PATCHBAY_LOGIN_SLOWDOWN_"
                           f"MAX_DELAY: {error} (e.g. \"20 per 15 minutes\" and 30)") from None


if __name__ == "__main__":
    serve(create_app())
