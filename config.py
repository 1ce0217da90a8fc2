"""Configuration: safe defaults, then ``PATCHBAY_*`` environment variables, then overrides.

Read only inside :func:`load_config`, called by ``create_app``; nothing here reads the
environment at import time.
"""

from __future__ import annotations

import logging
import os
import secrets
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # the engine reads DEFAULTS and runs without Flask
    from flask import Flask

PROJECT_DIR = Path(__file__).resolve().parent
VERSION = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["version"]

HOST_SESSION_COOKIE = "__Host-session"

DEFAULTS: dict[str, Any] = {
    # Sessions
    "SECRET_KEY": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    # Flask's; the OpenAPI document names it. Served over TLS (production's default)
    # the default becomes HOST_SESSION_COOKIE.
    "SESSION_COOKIE_NAME": "session",
    # None: the cookie is the console's host's alone (and may be __Host-session over TLS)
    "SESSION_COOKIE_DOMAIN": None,
    "WTF_CSRF_FIELD_NAME": "csrf_token",  # Flask-WTF's; login and logout drop it
    # CSRF: Flask-WTF's own check is off; services/auth/auth_tokens.py runs it for every
    # cookie-session request in these methods (bearer-token requests carry no cookie).
    "WTF_CSRF_CHECK_DEFAULT": False,
    "WTF_CSRF_METHODS": ["POST", "PUT", "PATCH", "DELETE"],
    # A page's CSRF token lasts as long as its login (a new one at every login and
    # logout; sessions expire and can be ended): a tab open for hours must still
    # reconnect its socket and post its forms.
    "WTF_CSRF_TIME_LIMIT": None,
    # Browser sessions are kept on the server (services/auth/login_sessions.py): ended by
    # logout, a password reset, a role change or disabling the user, and after these
    # many seconds without a request or socket event, or since login.
    "SESSION_IDLE_TIMEOUT": 12 * 3600,
    "SESSION_MAX_AGE": 7 * 86_400,
    # Flask's own: how long a signed session cookie is accepted. Always set from
    # SESSION_MAX_AGE by load_config (one lifetime, stated once).
    "PERMANENT_SESSION_LIFETIME": None,
    # Seconds between two checks of this process's open sockets against their sessions
    # and tokens (drops those ended from another process without a message queue).
    "SESSION_CHECK_INTERVAL": 5,
    "ENV": "development",  # "production": strong SECRET_KEY, TLS unless TLS=false
    # Served over HTTPS: cookies get the Secure flag. With ENV=production it defaults to
    # true; set PATCHBAY_TLS=false explicitly to serve production over plain HTTP.
    "TLS": None,
    "LOGIN_RATE_LIMIT": "10 per minute",  # login attempts per client address
    # Failed logins per account and address (an attacker elsewhere cannot lock the real
    # user out); the meta limit counts breaches of it, so the wait grows: 15 minutes,
    # then an hour after two breaches, then a day after four.
    "LOGIN_ACCOUNT_RATE_LIMIT": "20 per 15 minutes",
    "LOGIN_ACCOUNT_META_LIMIT": "2 per hour; 4 per day",
    # Failed logins of one account from any address (services/auth/login_slowdown.py): past
    # these, each login of the account waits before its answer, 1 s and doubling every
    # 10 further failures, at most LOGIN_SLOWDOWN_MAX_DELAY seconds (never refused: the
    # real user still logs in).
    "LOGIN_ACCOUNT_SLOWDOWN": "20 per 15 minutes",
    "LOGIN_SLOWDOWN_MAX_DELAY": 30,
    "RATELIMIT_STORAGE_URI": "memory://",  # redis://...: one limit across nodes
    # Storage unreachable (Redis down): count in this process's memory meanwhile.
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    # Storage
    "SQLALCHEMY_DATABASE_URI": None,
    "SQLALCHEMY_TRACK_MODIFICATIONS": False,
    # Jobs
    "RUNBOOK_DIR": str(PROJECT_DIR / "runbooks"),
    "DEFAULT_PARALLEL": 10,  # servers at once when a job does not say
    # The dashboard asks before a run on more servers than this, naming them
    "CONFIRM_SERVERS_OVER": 20,
    "MAX_CONCURRENT_HOSTS": 500,  # hard cap per process, across all jobs
    "SSH_CONNECT_TIMEOUT": 10,
    # Bytes of a step's output a server may send ahead of the console's reading (the
    # SSH channel window, in packets of a quarter of it; paramiko's own default is 2 MiB).
    # What a chatty job costs the console's memory grows with this times its servers; a
    # distant server streams at most this much per round trip (32 KiB at 50 ms: 650 KB/s
    # per server). At least 16384.
    "SSH_WINDOW": 32_768,
    "STEP_TIMEOUT": 3600,  # seconds, when neither runbook nor job sets one
    "KILL_GRACE": 5,  # seconds between TERM and KILL when stopping a command
    "KNOWN_HOSTS": None,  # path; defaults to ~/.ssh/known_hosts
    # Seconds: output coalescing window per host (the event writer gathers every host's
    # events for 0.03 s more, so a shorter window costs no extra commits or messages)
    "OUTPUT_FLUSH_INTERVAL": 0.05,
    "OUTPUT_FLUSH_LINES": 500,  # ... or this many lines, whichever comes first
    # Nodes (docs/architecture.md)
    "NODE_ID": None,  # names this process as the owner of the jobs it runs
    "NODE_ADDRESS": None,  # how people reach this node; default http://HOST:PORT
    "NODE_HEARTBEAT": 5,  # seconds between heartbeats (and takeover checks)
    "NODE_TIMEOUT": 20,  # seconds without a heartbeat before a node counts as dead
    "TRUSTED_PROXIES": 0,  # proxy hops (nginx = 1) whose X-Forwarded-* are believed
    # ... and only on connections from these addresses or CIDR networks (the proxies'),
    # comma-separated: a client reaching a node directly cannot claim another address.
    "TRUSTED_PROXY_ADDRESSES": "127.0.0.0/8, ::1",
    # Client addresses or CIDR networks, comma-separated, that may read /metrics
    # without logging in (docs/metrics.md); admins may always. "" = none.
    "METRICS_ALLOW": "",
    # Remote steps (docs/remote-steps.md)
    "REMOTE_RUN_DIR": "~/.patchbay/runs",  # on each server: <dir>/<job uid>/<host>/<step>
    "REATTACH_TIMEOUT": 120,  # seconds to keep reconnecting to a server lost mid-step
    "REMOTE_RUN_RETENTION": 7 * 86_400,  # seconds before a leftover run directory goes
    "MAX_STEP_OUTPUT": 1 << 30,  # bytes of output (both streams) that stop a step
    # Servers page: how often and how the SSH ports are probed while someone watches
    "FLEET_PROBE_INTERVAL": 30,  # seconds between rounds
    "FLEET_PROBE_TIMEOUT": 3,  # seconds per TCP connect
    "FLEET_PROBE_CONCURRENCY": 50,  # connects at once
    # Webhooks (docs/webhooks.md)
    "PUBLIC_URL": None,  # how people reach the console, e.g. https://patchbay.example.com
    "WEBHOOK_TIMEOUT": 10,  # seconds per connect and per read of one delivery attempt
    "WEBHOOK_RETRY_BASE": 10,  # seconds before the first retry; doubles after each failure
    "WEBHOOK_RETRY_MAX": 900,  # seconds: the longest wait between two attempts
    "WEBHOOK_GIVE_UP_AFTER": 3600,  # seconds after the event: no attempt after that
    "WEBHOOK_CONCURRENCY": 20,  # deliveries in flight at once per node
    "WEBHOOK_POLL_INTERVAL": 1,  # seconds between looks for due deliveries
    "WEBHOOK_RETENTION": 30 * 86_400,  # seconds a finished delivery stays in the log
    # CIDR networks, comma-separated, that webhooks may reach although they are not
    # public: loopback, private, link-local … are refused otherwise (docs/webhooks.md,
    # "Where deliveries may go"). "" = none.
    "WEBHOOK_ALLOW_NETWORKS": "",
    # Limits on what one user can make the console do (docs/live-api.md, "Limits")
    "MAX_SOCKETS_PER_USER": 20,  # open Socket.IO connections per user, per node
    # Engine.IO sessions per client address that have not logged in yet (per node);
    # a further handshake gets a 401. A refused connect closes its session at once.
    "MAX_HANDSHAKES_PER_ADDRESS": 20,
    # Jobs one socket may be replaying at once; a further job:subscribe stops the
    # socket's oldest replay (it may subscribe to that job again later)
    "MAX_REPLAYS_PER_SOCKET": 8,
    # Log downloads (/jobs/<id>/log.txt) per user (a limits string, as LOGIN_RATE_LIMIT)
    "LOG_DOWNLOAD_RATE_LIMIT": "30 per minute",
    # Bytes of events in one API page, one replay batch or one download read (at least
    # one event is always sent; the page then says where to go on)
    "MAX_PAGE_BYTES": 1 << 20,
    # Bytes of stored output lines /jobs/<id>/output shows on one page; a bigger job's
    # page shows no lines (never part of them) and offers the downloads
    "PRINT_MAX_BYTES": 4 << 20,
    # Output events one log search may look through; a broader search is refused
    # (search_too_broad: narrow it to a server or a seq range)
    "SEARCH_MAX_EVENTS": 20_000,
    # fleet:subscribe {"probe": true} per user (a limits string, as LOGIN_RATE_LIMIT)
    "FLEET_PROBE_RATE_LIMIT": "6 per minute",
    # Bytes of output lines stored per job (all servers and streams); later lines are
    # dropped after one marker line per server, and the job runs on
    "MAX_JOB_OUTPUT": 2 << 30,
    # Days a finished job keeps its events (`flask prune-events`, and once a day on
    # every node when non-zero); 0 keeps them forever
    "EVENT_RETENTION_DAYS": 0,
    # Logging
    "LOG_LEVEL": "INFO",
    # Socket.IO
    "ASYNC_MODE": "eventlet",
    "MESSAGE_QUEUE": None,  # e.g. redis://...: Socket.IO rooms shared by several processes
    # With ENV=production a redis:// or rediss:// MESSAGE_QUEUE or RATELIMIT_STORAGE_URI
    # must carry a password (redis://:PASSWORD@host/0 or redis://USER:PASSWORD@...):
    # whoever reaches an open Redis can send Socket.IO messages to every browser and
    # reset the login counters. unix:// sockets pass (their file mode guards them).
    # True starts anyway, e.g. behind a Redis reachable by the nodes alone.
    "MESSAGE_QUEUE_ALLOW_NO_AUTH": False,
    "MAX_SOCKET_PAYLOAD": 64 * 1024,  # bytes a client may send in one message
    "CORS_ALLOWED_ORIGINS": None,  # None = same origin only
    "PORT": 5000,
    "HOST": "127.0.0.1",
    # `python app.py` under eventlet (serving.py): seconds a connection may take to send
    # a request's line and headers (also the idle time between two requests), and open
    # connections per client address, 0 = no limit (the trusted proxies are not counted)
    "HEADER_TIMEOUT": 10,
    "MAX_CONNECTIONS_PER_ADDRESS": 100,
}


def load_config(app: Flask, overrides: dict[str, Any] | None = None) -> None:
    """Fill ``app.config`` from defaults, the environment, then ``overrides``."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("PATCHBAY")
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if overrides:
        app.config.from_mapping(overrides)

    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        Path(app.instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = (
            f"sqlite:///{Path(app.instance_path) / 'patchbay.db'}"
        )
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Short busy timeout: a writer stuck behind another one must fail fast rather
        # than freeze every greenlet (SQLite waits for its lock in C).
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": 5}})
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # A node outlives database restarts: test pooled connections before use.
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    if app.config["ENV"] == "production":
        _require_strong_secret(app.config["SECRET_KEY"])
        if not _flag(app.config, "MESSAGE_QUEUE_ALLOW_NO_AUTH"):
            _require_redis_password(app.config)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path))
    app.config["TLS"] = _tls(app)
    if app.config["TLS"]:
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
        if app.config["SESSION_COOKIE_NAME"] == DEFAULTS["SESSION_COOKIE_NAME"] \
                and not app.config["SESSION_COOKIE_DOMAIN"]:
            # The browser keeps a __Host- cookie only when Secure, for this host alone
            # and path /: no sibling subdomain or plain-HTTP page can plant one.
            app.config["SESSION_COOKIE_NAME"] = HOST_SESSION_COOKIE
    # The signed cookie itself stops being accepted after the absolute lifetime.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(
        seconds=float(app.config["SESSION_MAX_AGE"]))
    # A failed statement's parameters (output lines, commands) stay out of the log.
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    options.setdefault("hide_parameters", True)
    if not app.config["NODE_ID"]:
        # Host and port: two consoles on one host must not take each other's jobs for
        # their own when they recover after a crash.
        app.config["NODE_ID"] = f"{os.uname().nodename}:{app.config['PORT']}"
    if not app.config["NODE_ADDRESS"]:
        app.config["NODE_ADDRESS"] = f"http://{app.config['HOST']}:{app.config['PORT']}"


def _tls(app: Flask) -> bool:
    """Secure cookies are the rule in production: plain HTTP there must be asked for
    (``PATCHBAY_TLS=false``), and is logged as a warning at every start."""
    value = app.config["TLS"]
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise RuntimeError(f"PATCHBAY_TLS must be true or false, not {value!r}")
        value = lowered in ("true", "1", "yes")
    if value is None:
        return app.config["ENV"] == "production"
    if not value and app.config["ENV"] == "production":
        logging.getLogger("patchbay.config").warning(
            "PATCHBAY_TLS=false in production: session cookies are sent over plain HTTP, "
            "where anyone on the path can copy them. Serve the console over HTTPS.")
    return bool(value)


WEAK_SECRETS = {"dev", "secret", "changeme", "change-me", "development", "test", "patchbay"}


def _require_strong_secret(secret: str | None) -> None:
    """In production a forged session cookie would be a fleet-wide root shell."""
    if not secret:
        raise RuntimeError("PATCHBAY_SECRET_KEY must be set when PATCHBAY_ENV=production")
    if secret.lower() in WEAK_SECRETS or len(secret) < 32:
        raise RuntimeError(
            "PATCHBAY_SECRET_KEY is too weak for production: use at least 32 random "
            "characters (e.g. python -c 'import secrets; print(secrets.token_hex(32))')")


def _flag(config: dict[str, Any], name: str) -> bool:
    """A true/false setting, given as a bool or (from the environment) a string."""
    value = config[name]
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise RuntimeError(f"PATCHBAY_{name} must be true or false, not {value!r}")
        return lowered in ("true", "1", "yes")
    return bool(value)


def _require_redis_password(config: dict[str, Any]) -> None:
    """A production node talks to Redis with a password, or not at all."""
    for name in ("MESSAGE_QUEUE", "RATELIMIT_STORAGE_URI"):
        url = config[name] or ""
        scheme = url.partition("://")[0].lower()
        if scheme not in ("redis", "rediss") and not scheme.startswith("redis+"):
            continue
        if not urlsplit(url).password:
            raise RuntimeError(
                f"PATCHBAY_{name} has no password ({masked_url(url)}) and "
                "PATCHBAY_ENV=production: anyone who reaches that Redis could send "
                "messages to every browser and reset login limits. Set requirepass or an "
                "ACL user and use redis://:PASSWORD@host:6379/N (rediss:// for TLS), or "
                "set PATCHBAY_MESSAGE_QUEUE_ALLOW_NO_AUTH=true to start anyway.")


def masked_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for errors and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _instance_secret(instance_dir: Path) -> str:
    """A random secret kept in the instance folder, so sessions survive restarts."""
    path = instance_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret
