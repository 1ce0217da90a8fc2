"""Security review, second pass (issue #12): sessions that can be ended, sockets dropped
from any process, no user-name oracle in login timing, per-account login limits, the
socket handshake's CSRF token, and the smaller items (production cookies, audit user
names, hidden SQL parameters). Each test is named after its finding."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import socketio as socketio_client
from flask.testing import FlaskClient
from sqlalchemy import select

from services.console import console_services
from tests.conftest import PASSWORD, PROJECT, AuthActions, page_csrf_token, socket_test_client
from tests.support.live_server import handshake
from tests.support.waiting import wait_until


def cookie_copy(app, client: FlaskClient) -> FlaskClient:
    """Another client holding a copy of ``client``'s session cookie (a stolen cookie)."""
    name = app.config["SESSION_COOKIE_NAME"]
    thief = app.test_client()
    thief.set_cookie(name, client.get_cookie(name).value)
    return thief


def logged_in(app, username: str = "alice", role: str = "operator") -> FlaskClient:
    client = app.test_client()
    auth = AuthActions(app, client)
    auth.create(username, role=role)
    assert auth.login(username).status_code == 302
    return client


def test_finding_1_a_cookie_saved_before_logout_gets_401_afterwards(app):
    client = logged_in(app)
    thief = cookie_copy(app, client)
    assert thief.get("/api/servers").status_code == 200

    token = page_csrf_token(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302

    assert thief.get("/api/servers").status_code == 401
    assert client.get("/api/servers").status_code == 401
    assert thief.get("/").status_code == 302  # pages send it to the login form


def test_finding_1_logout_ends_only_that_browser_session(app):
    client = logged_in(app)
    other_browser = app.test_client()
    assert AuthActions(app, other_browser).login("alice").status_code == 302

    client.post("/logout", data={"csrf_token": page_csrf_token(client)})

    assert other_browser.get("/api/servers").status_code == 200


@pytest.mark.parametrize("change", [
    ["reset-password", "alice", "--password", "a brand new password"],
    ["set-role", "alice", "viewer"],
    ["disable-user", "alice"],
])
def test_finding_1_password_reset_role_change_and_disabling_end_every_session(app, change):
    client = logged_in(app)
    thief = cookie_copy(app, client)

    result = app.test_cli_runner().invoke(args=change)

    assert result.exit_code == 0, result.output
    assert thief.get("/api/servers").status_code == 401
    assert client.get("/api/servers").status_code == 401


def test_finding_1_an_admin_page_change_ends_the_users_sessions(app):
    admin = logged_in(app, "root", "admin")
    client = app.test_client()
    AuthActions(app, client).create("alice")
    assert AuthActions(app, client).login("alice").status_code == 302
    from extensions import db
    from models import User

    with app.app_context():
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
    response = admin.post(f"/admin/users/{alice_id}", data={
        "action": "role", "role": "viewer", "csrf_token": page_csrf_token(admin)})

    assert response.status_code in (200, 302), response.get_data(as_text=True)[:300]
    assert client.get("/api/servers").status_code == 401


def _age_sessions(app, **ages: timedelta) -> None:
    """Move every login session's clock back (instead of waiting hours)."""
    from extensions import db
    from models import LoginSession

    with app.app_context():
        for row in db.session.scalars(select(LoginSession)):
            for column, age in ages.items():
                setattr(row, column, getattr(row, column) - age)
        db.session.commit()


def test_finding_1_sessions_expire_after_12_hours_idle(app):
    assert app.config["SESSION_IDLE_TIMEOUT"] == 12 * 3600
    client = logged_in(app)
    _age_sessions(app, last_seen_at=timedelta(hours=11, minutes=58))
    assert client.get("/api/servers").status_code == 200  # used: idle time starts over

    _age_sessions(app, last_seen_at=timedelta(hours=12, minutes=1))

    assert client.get("/api/servers").status_code == 401


def test_finding_1_sessions_end_7_days_after_login_however_busy(app):
    assert app.config["SESSION_MAX_AGE"] == 7 * 86_400
    client = logged_in(app)
    _age_sessions(app, created_at=timedelta(days=6, hours=23))
    assert client.get("/api/servers").status_code == 200

    _age_sessions(app, created_at=timedelta(hours=2))

    assert client.get("/api/servers").status_code == 401


def test_finding_1_lifetimes_are_configurable_and_the_cookie_follows_them(tmp_path):
    from app import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "SESSION_IDLE_TIMEOUT": 600, "SESSION_MAX_AGE": 3600,
                      "ASYNC_MODE": "threading"})

    lifetimes = console_services(app).session_lifetimes
    assert lifetimes.idle == timedelta(minutes=10)
    assert lifetimes.absolute == timedelta(hours=1)
    assert app.permanent_session_lifetime == timedelta(hours=1)


def test_finding_1_every_socket_event_checks_the_session(app):
    client = logged_in(app)
    sock = socket_test_client(app, client)
    assert sock.is_connected()
    assert sock.emit("job:unsubscribe", {"job_id": 1}, callback=True)["ok"] is True

    from extensions import db
    from services.auth import login_sessions

    with app.app_context():  # as another process would: the database only, no drop
        login_sessions.end_all(1, "password reset")
        db.session.commit()

    ack = sock.emit("job:unsubscribe", {"job_id": 1}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "unauthorized", ack


def test_finding_1_ending_sessions_in_this_process_drops_their_sockets_at_once(app):
    client = logged_in(app)
    sock = socket_test_client(app, client)
    assert sock.is_connected()

    app.test_cli_runner().invoke(args=["reset-password", "alice", "--password",
                                       "another long password"])

    assert not sock.is_connected()


def test_finding_8_the_socket_handshake_needs_the_sessions_csrf_token(app):
    from extensions import socketio

    client = logged_in(app)

    without = socketio.test_client(app, flask_test_client=client)
    forged = socketio.test_client(app, flask_test_client=client,
                                  auth={"csrf_token": "forged-token"})
    other_session = logged_in(app, "bob")
    foreign = socketio.test_client(app, flask_test_client=client,
                                   auth={"csrf_token": page_csrf_token(other_session)})
    good = socket_test_client(app, client)

    assert not without.is_connected()
    assert not forged.is_connected()
    assert not foreign.is_connected()  # a token of another session does not do
    assert good.is_connected()


# --- against a real console process -------------------------------------------------

def flask_command(server, *args: str) -> subprocess.CompletedProcess:
    """A ``flask`` command in its own process on the running console's database (no
    message queue: it holds no sockets and cannot reach the console's)."""
    env = {**os.environ, "DATABASE_URL": server.env["DATABASE_URL"],
           "PATCHBAY_INSTANCE_PATH": server.env["PATCHBAY_INSTANCE_PATH"],
           "PATCHBAY_SECRET_KEY": server.env["PATCHBAY_SECRET_KEY"],
           "PATCHBAY_ASYNC_MODE": "threading", "FLASK_APP": "app:create_app"}
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.asyncmode
def test_finding_2_flask_disable_user_drops_the_open_socket_of_a_running_console(
        live_server_factory):
    server = live_server_factory(users=[("alice", PASSWORD, "operator"),
                                        ("bob", PASSWORD, "operator")])
    alice, bob = server.login("alice"), server.login("bob")
    alice_socket, bob_socket = server.socket(alice), server.socket(bob)
    ended = []
    alice_socket.on("session:ended", ended.append)

    result = flask_command(server, "disable-user", "alice")

    assert result.returncode == 0, result.stderr
    wait_until(lambda: not alice_socket.connected, timeout=20,
               what="alice's socket dropped by the console's own check")
    assert ended and ended[0]["reason"]
    assert alice.get(f"{server.url}/api/servers", timeout=10).status_code == 401
    assert bob_socket.connected  # only hers
    bob_socket.disconnect()


@pytest.mark.asyncmode
def test_finding_2_a_password_reset_from_a_shell_ends_a_copied_cookie_and_its_socket(
        live_server_factory):
    import requests

    server = live_server_factory()
    alice = server.login("alice")
    thief = requests.Session()
    thief.cookies.update(alice.cookies)
    thief.headers["X-CSRFToken"] = alice.headers["X-CSRFToken"]
    stolen_socket = server.socket(thief)

    result = flask_command(server, "reset-password", "alice", "--password",
                           "a fresh long password")

    assert result.returncode == 0, result.stderr
    wait_until(lambda: not stolen_socket.connected, timeout=20, what="socket dropped")
    assert thief.get(f"{server.url}/api/servers", timeout=10).status_code == 401
    refused = socketio_client.Client(http_session=thief, reconnection=False)
    with pytest.raises(socketio_client.exceptions.ConnectionError):
        refused.connect(server.url, transports=["websocket"], wait_timeout=5,
                        auth=handshake(thief))


@pytest.mark.asyncmode
def test_finding_8_a_foreign_page_cannot_open_a_socket_even_with_permissive_cors(
        live_server_factory):
    server = live_server_factory(env={"PATCHBAY_CORS_ALLOWED_ORIGINS": "*"})
    http = server.login()
    hijack = socketio_client.Client(http_session=http, reconnection=False)
    reasons = []
    hijack.on("connect_error", reasons.append)

    with pytest.raises(socketio_client.exceptions.ConnectionError):
        hijack.connect(server.url, transports=["websocket"], wait_timeout=5,
                       headers={"Origin": "http://evil.example"})

    assert "CSRF token" in str(reasons), reasons
    same_page = server.socket(http)  # the console's own page sends its token
    assert same_page.connected
    same_page.disconnect()


# --- logins -------------------------------------------------------------------------

def _login_app(tmp_path, **config):
    from flask_migrate import upgrade

    from app import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "TESTING": True,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "ASYNC_MODE": "threading", **config})
    with app.app_context():
        upgrade(directory=str(PROJECT / "migrations"))
    return app


def _timed_login(client: FlaskClient, username: str) -> float:
    """One failed login through the form: the CPU seconds the console spent on it.

    The test client answers in this thread (threading mode), so this thread's CPU time
    is the server's work (the password hash above all), and other processes on a busy
    machine do not add to it as they do to wall-clock time (two chaos runs beside the
    suite moved the fastest of 20 wall-clock logins apart by 45 ms)."""
    token = page_csrf_token(client) or _login_form_token(client)
    started = time.thread_time()
    response = client.post("/login", data={"username": username, "password": "wrong guess",
                                           "csrf_token": token})
    elapsed = time.thread_time() - started
    assert response.status_code == 401
    return elapsed


def _login_form_token(client: FlaskClient) -> str:
    import re

    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def test_finding_5_login_timing_does_not_tell_which_user_names_exist(tmp_path):
    app = _login_app(tmp_path, LOGIN_RATE_LIMIT="1000 per minute",
                     LOGIN_ACCOUNT_RATE_LIMIT="1000 per minute",
                     LOGIN_ACCOUNT_SLOWDOWN="1000 per 15 minutes")  # the hash alone
    auth = AuthActions(app, app.test_client())
    auth.create("dave")
    auth.create("erin")
    app.test_cli_runner().invoke(args=["disable-user", "erin"])
    client = app.test_client()
    _timed_login(client, "dave")  # warm up (first-request work)

    samples: dict[str, list[float]] = {"real": [], "unknown": [], "disabled": []}
    for round_ in range(20):  # interleaved, so machine load hits all three alike
        samples["real"].append(_timed_login(client, "dave"))
        samples["unknown"].append(_timed_login(client, f"nobody-{round_}"))
        samples["disabled"].append(_timed_login(client, "erin"))

    # Each kind's fastest answer: the work the server does for it. Load from the rest of
    # the suite only ever adds time, and with three passes sharing 2 cores it moved the
    # medians of 20 logins apart by up to 40 ms (each login hashes for about 200 ms).
    fastest = {kind: min(times) for kind, times in samples.items()}
    assert abs(fastest["real"] - fastest["unknown"]) < 0.015, samples
    assert abs(fastest["real"] - fastest["disabled"]) < 0.015, samples


def test_finding_6_failed_logins_are_limited_per_account_and_address(tmp_path):
    app = _login_app(tmp_path, LOGIN_RATE_LIMIT="1000 per minute",
                     LOGIN_ACCOUNT_RATE_LIMIT="3 per 15 minutes")
    AuthActions(app, app.test_client()).create("dave")
    AuthActions(app, app.test_client()).create("erin")
    attacker = AuthActions(app, app.test_client())
    attacker.client.environ_base["REMOTE_ADDR"] = "203.0.113.9"

    failures = [attacker.login("dave", f"guess {i}").status_code for i in range(3)]
    blocked = attacker.login("dave", PASSWORD)  # even the right password, from there

    assert failures == [401, 401, 401]
    assert blocked.status_code == 429
    assert "Too many failed logins for this account" in blocked.get_data(as_text=True)
    assert attacker.login("erin").status_code == 302  # other accounts: not limited
    real_user = AuthActions(app, app.test_client())
    real_user.client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert real_user.login("dave").status_code == 302  # not locked out from elsewhere


def test_finding_6_successful_logins_do_not_count_against_the_account(tmp_path):
    app = _login_app(tmp_path, LOGIN_RATE_LIMIT="1000 per minute",
                     LOGIN_ACCOUNT_RATE_LIMIT="3 per 15 minutes")
    AuthActions(app, app.test_client()).create("dave")

    statuses = [AuthActions(app, app.test_client()).login("dave").status_code
                for _ in range(6)]

    assert statuses == [302] * 6


def test_finding_6_the_wait_grows_after_repeated_breaches(tmp_path):
    """The meta limit counts breaches of the account limit: past it, the account is
    refused from that address for the meta limit's whole window."""
    app = _login_app(tmp_path, LOGIN_RATE_LIMIT="1000 per minute",
                     LOGIN_ACCOUNT_RATE_LIMIT="2 per 15 minutes",
                     LOGIN_ACCOUNT_META_LIMIT="1 per day")
    AuthActions(app, app.test_client()).create("dave")
    attacker = AuthActions(app, app.test_client())
    limiter = app.extensions["limiter"]
    limiter = next(iter(limiter)) if isinstance(limiter, set) else limiter

    for _ in range(2):
        assert attacker.login("dave", "guess").status_code == 401
    assert attacker.login("dave", "guess").status_code == 429  # breach 1
    limiter.reset()  # the 15 minutes pass (and with them every window, so ...)
    for _ in range(2):
        assert attacker.login("dave", "guess").status_code == 401
    assert attacker.login("dave", "guess").status_code == 429  # breach 2: meta limit

    assert attacker.login("dave", PASSWORD).status_code == 429


# --- smaller items --------------------------------------------------------------------

def test_finding_9_production_requires_secure_cookies_unless_tls_is_turned_off(
        tmp_path, caplog):
    from app import create_app

    strong = "s" * 16 + "3cr3t-k3y-0f-at-least-32-chars"
    base = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": strong, "ENV": "production",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
            "ASYNC_MODE": "threading"}

    production = create_app(base)
    assert production.config["SESSION_COOKIE_SECURE"] is True

    with caplog.at_level(logging.WARNING):
        plain = create_app({**base, "TLS": False})
    assert not plain.config.get("SESSION_COOKIE_SECURE")
    assert "PATCHBAY_TLS=false in production" in caplog.text

    development = create_app({**base, "ENV": "development"})
    assert not development.config.get("SESSION_COOKIE_SECURE")


def test_finding_9_a_failed_logins_user_name_is_cut_and_sanitized_in_the_audit_log(app):
    from extensions import db
    from models import AuditEntry

    client = app.test_client()
    typed = "evil\x1b[31m\r\nadmin logged in" + "x" * 30  # the form takes 64 at most
    token = _login_form_token(client)
    client.post("/login", data={"username": typed, "password": "guess",
                                "csrf_token": token})

    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "login.failed"))
    assert entry is not None
    assert len(entry.username) <= 33
    assert entry.username.isprintable()
    assert entry.username.startswith("evil?[31m??admin")


def test_finding_9_a_failed_statement_does_not_log_its_parameters(app, caplog):
    from sqlalchemy.exc import IntegrityError

    from extensions import db
    from models import User

    secret_line = "output line with a password=hunter2-do-not-log"
    with app.app_context():
        db.session.add(User(username="twin", password_hash="x"))
        db.session.commit()
        db.session.add(User(username="twin", password_hash=secret_line))
        with pytest.raises(IntegrityError) as failure:
            db.session.commit()
        db.session.rollback()
        assert db.engine.hide_parameters is True

    assert "hunter2" not in str(failure.value)
    assert "hunter2" not in caplog.text


def test_finding_1_sessions_past_their_lifetime_are_forgotten_at_the_next_login(app):
    from extensions import db
    from models import LoginSession

    client = logged_in(app)
    client.post("/logout", data={"csrf_token": page_csrf_token(client)})
    _age_sessions(app, created_at=timedelta(days=9), last_seen_at=timedelta(days=8),
                  ended_at=timedelta(days=8))
    AuthActions(app, app.test_client()).login("alice")

    with app.app_context():
        rows = db.session.scalars(select(LoginSession)).all()
    assert len(rows) == 1 and rows[0].ended_at is None  # only the new one is kept


def test_audit3b_10_production_refuses_a_redis_url_without_a_password(tmp_path):
    from app import create_app

    strong = "s" * 16 + "3cr3t-k3y-0f-at-least-32-chars"
    base = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": strong, "ENV": "production",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
            "ASYNC_MODE": "threading"}

    with pytest.raises(RuntimeError, match="PATCHBAY_MESSAGE_QUEUE has no password") as error:
        create_app({**base, "MESSAGE_QUEUE": "redis://127.0.0.1:6379/0"})
    assert "PATCHBAY_MESSAGE_QUEUE_ALLOW_NO_AUTH" in str(error.value)
    with pytest.raises(RuntimeError, match="PATCHBAY_RATELIMIT_STORAGE_URI has no password"):
        create_app({**base, "RATELIMIT_STORAGE_URI": "rediss://patchbay@10.0.0.5:6379/1"})

    # A password, a unix socket, the opt-out, or development: it starts, and the
    # password never shows in an error.
    from config import masked_url
    assert masked_url("redis://patchbay:hunter2@h:6379/0") == "redis://patchbay:***@h:6379/0"
    create_app({**base, "MESSAGE_QUEUE": "redis://:pw@127.0.0.1:6379/0",
                "RATELIMIT_STORAGE_URI": "rediss://patchbay:pw@127.0.0.1:6379/1"})
    create_app({**base, "MESSAGE_QUEUE": "unix:///run/redis/redis.sock?db=0"})
    create_app({**base, "MESSAGE_QUEUE": "redis://127.0.0.1:6379/0",
                "MESSAGE_QUEUE_ALLOW_NO_AUTH": "true"})
    create_app({**base, "ENV": "development", "MESSAGE_QUEUE": "redis://127.0.0.1:6379/0"})


# --- audit 3: the secret key is not a session ---------------------------------------

def forged_client(app, **data) -> tuple[FlaskClient, str]:
    """A client holding a session cookie signed with the app's SECRET_KEY (what someone
    who knows only the key can make), and a CSRF token that matches that cookie."""
    import hashlib

    from itsdangerous import URLSafeTimedSerializer

    csrf_secret = hashlib.sha1(os.urandom(16)).hexdigest()  # noqa: S324 - as Flask-WTF
    cookie = app.session_interface.get_signing_serializer(app).dumps(
        {**data, "csrf_token": csrf_secret})
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    csrf = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token").dumps(csrf_secret)
    return client, csrf


def _cli_token(app, username: str, role: str) -> tuple[int, int, str]:
    """A token made with ``flask create-token``: its user's id, its id and clear text."""
    from extensions import db
    from models import ApiToken

    result = app.test_cli_runner().invoke(args=["create-token", username, "--name", role,
                                                "--role", role])
    assert result.exit_code == 0, result.output
    raw = result.output.strip().splitlines()[-1]
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.prefix == raw[:12]))
        return token.user_id, token.id, raw


def test_audit3_1_a_cookie_signed_with_the_secret_key_is_not_a_session(app):
    AuthActions(app, app.test_client()).create("ada", role="admin")
    user_id, token_id, _ = _cli_token(app, "ada", "viewer")

    for data in ({"_user_id": str(user_id), "token_id": token_id},
                 {"_user_id": str(user_id), "token_id": token_id, "token_role": "admin"},
                 {"_user_id": str(user_id)}):
        forged, _ = forged_client(app, **data)
        assert forged.get("/admin/users").status_code == 302, data  # to the login form
        assert forged.get("/api/servers").status_code == 401, data


@pytest.mark.parametrize("token_role,cookie_role,allowed", [
    ("viewer", None, False),      # a cookie without a cap does not drop the token's
    ("viewer", "admin", False),   # ... nor does one naming a higher cap
    ("operator", "viewer", True),  # ... nor can it lower a token's cap
])
def test_audit3_1_a_forged_cookie_cannot_change_a_token_sockets_cap(
        app, token_role, cookie_role, allowed):
    from extensions import socketio

    AuthActions(app, app.test_client()).create("ada", role="admin")
    user_id, token_id, raw = _cli_token(app, "ada", token_role)
    data = {"_user_id": str(user_id), "token_id": token_id}
    if cookie_role is not None:
        data["token_role"] = cookie_role
    forged, csrf = forged_client(app, **data)

    sock = socketio.test_client(app, flask_test_client=forged,
                                auth={"token": raw, "csrf_token": csrf})
    assert sock.is_connected()
    ack = sock.emit("job:plan", {"runbook": "nope", "params": {}, "servers": ["x"]},
                    callback=True)
    assert ack["ok"] is False
    if allowed:
        assert ack["error"]["code"] != "forbidden", ack
    else:
        assert ack["error"] == {"code": "forbidden", "field": None, "message":
                                "viewers can't preview jobs (that takes the operator role)"}
    assert sock.emit("job:unsubscribe", {"job_id": 1}, callback=True)["ok"] is True
    sock.disconnect()


def test_audit3_1_a_token_socket_keeps_its_cap_on_the_server_and_forgets_it_on_leaving(app):
    from extensions import socketio

    AuthActions(app, app.test_client()).create("ada", role="admin")
    _, token_id, raw = _cli_token(app, "ada", "viewer")

    sock = socketio.test_client(app, auth={"token": raw})
    assert sock.is_connected()
    ack = sock.emit("job:start", {"runbook": "basic", "params": {}, "servers": ["x"]},
                    callback=True)
    assert ack["error"]["code"] == "forbidden"
    sockets = console_services(app).socket_tokens
    assert [t.id for t in sockets.all()] == [token_id]
    sock.disconnect()
    assert sockets.all() == []
