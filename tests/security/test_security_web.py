"""Sessions, forms and headers: CSRF, login rate limit, no user enumeration, cookie
flags, security headers, the production secret check, and the audit trail of user
changes."""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import func, select

from services.console import console_services
from tests.conftest import PASSWORD, PROJECT


def token_from(page: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def count(app, model) -> int:
    from extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def admin(app, auth, client):
    auth.create("root-admin", role="admin")
    assert auth.login("root-admin").status_code == 302
    return client


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_admin_form_without_a_valid_csrf_token_is_refused_and_changes_nothing(
        app, admin, token):
    from models import User

    before = count(app, User)
    data = {"username": "mallory", "password": "long enough pw", "role": "admin"}
    if token:
        data["csrf_token"] = token
    admin.get("/admin/users")  # the form's page is open: the session has a CSRF secret

    response = admin.post("/admin/users", data=data)

    assert response.status_code == 400
    assert "CSRF token" in response.get_data(as_text=True)
    assert count(app, User) == before


def test_api_post_without_csrf_header_is_refused_and_starts_nothing(app, admin):
    from models import Job

    response = admin.post("/api/jobs", json={"runbook": "basic",
                                              "params": {"message": "x"}, "servers": ["a"]})

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "csrf"
    assert count(app, Job) == 0


def test_nul_characters_are_refused_at_the_door_with_the_field_named(app, auth, admin):
    """PostgreSQL refuses NUL in text: every database gets the same clear 400."""
    from models import Job

    token = token_from(admin.get("/").get_data(as_text=True))
    cases = [
        (admin.get("/api/jobs?runbook=ba%00sic"), "runbook"),
        (admin.get("/jobs?user=x%00"), "user"),
        (admin.get("/admin/audit?action=lo%00gin"), "action"),
        (admin.post("/api/jobs", headers={"X-CSRFToken": token}, json={
            "runbook": "basic", "params": {"message": "x"}, "servers": ["h\x00"]}),
         "servers.0"),
        (admin.post("/api/jobs", headers={"X-CSRFToken": token}, json={
            "runbook": "basic", "params": {"mess\x00age": "x"}, "servers": ["a"]}),
         "params.mess\x00age"),
    ]
    for response, field in cases:
        assert response.status_code == 400, (field, response.status_code)
        text = response.get_data(as_text=True)
        assert "contains a NUL character" in text, field
        if response.is_json:
            assert response.get_json()["error"]["field"] == field
    login = auth.login("root\x00admin")
    assert login.status_code == 400
    assert "username contains a NUL character" in login.get_data(as_text=True)
    assert count(app, Job) == 0


def test_admin_creates_disables_and_changes_roles_with_an_audit_trail(app, admin):
    from extensions import db
    from models import AuditEntry, User

    token = token_from(admin.get("/admin/users").get_data(as_text=True))
    created = admin.post("/admin/users", data={"username": "bob", "password": "a fine pass",
                                               "role": "viewer", "csrf_token": token})
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
    promoted = admin.post(f"/admin/users/{bob.id}", data={
        "action": "role", "role": "operator", "csrf_token": token})
    disabled = admin.post(f"/admin/users/{bob.id}", data={
        "action": "disable", "role": "operator", "csrf_token": token})

    assert [created.status_code, promoted.status_code, disabled.status_code] == [302] * 3
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        trail = [(e.username, e.action, e.target) for e in
                 db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert (bob.role, bob.active) == ("operator", False)
    assert trail[-3:] == [("root-admin", "user.create", "bob"),
                          ("root-admin", "user.role", "bob"),
                          ("root-admin", "user.disable", "bob")]
    page = admin.get("/admin/audit?action=user.&user=root-admin").get_data(as_text=True)
    assert page.count('data-action="user.') == 3


def test_the_last_admin_cannot_be_demoted(app, admin):
    from extensions import db
    from models import User

    token = token_from(admin.get("/admin/users").get_data(as_text=True))
    with app.app_context():
        me = db.session.scalar(select(User).where(User.username == "root-admin"))
    runner = app.test_cli_runner()

    via_page = admin.post(f"/admin/users/{me.id}", data={"action": "role", "role": "viewer",
                                                         "csrf_token": token})
    via_cli = runner.invoke(args=["set-role", "root-admin", "viewer"])

    assert via_page.status_code == 400
    assert "cannot demote or disable yourself" in via_page.get_data(as_text=True)
    assert via_cli.exit_code != 0
    assert "last active admin" in via_cli.output
    with app.app_context():
        assert db.session.get(User, me.id).role == "admin"


def test_disabled_user_cannot_log_in_and_their_session_ends(app, auth, client):
    auth.create("carol")
    assert auth.login("carol").status_code == 302
    result = app.test_cli_runner().invoke(args=["disable-user", "carol"])

    assert result.exit_code == 0, result.output
    assert client.get("/api/jobs").status_code == 401
    assert auth.login("carol").status_code == 401


def test_login_failures_do_not_reveal_whether_a_user_exists(app, auth, client):
    auth.create("dave")

    wrong_password = auth.login("dave", "not the password")
    unknown_user = auth.login("nobody-here", "not the password")

    assert wrong_password.status_code == unknown_user.status_code == 401
    message = "Wrong user name or password."
    assert message in wrong_password.get_data(as_text=True)
    assert message in unknown_user.get_data(as_text=True)


def test_login_attempts_are_rate_limited_with_a_clear_message(app, auth, client):
    auth.create("erin")
    statuses = [auth.login("erin", f"guess {i}").status_code for i in range(10)]

    blocked = auth.login("erin", PASSWORD)

    assert statuses == [401] * 10
    assert blocked.status_code == 429
    assert "Too many login attempts" in blocked.get_data(as_text=True)


def test_the_login_limit_holds_while_its_shared_storage_is_down(tmp_path):
    """Redis (the limit's storage on several nodes) unreachable: logins still work,
    and the limit is counted in the process meanwhile."""
    from flask_migrate import upgrade

    from app import create_app
    from stack.processes import free_port
    from tests.conftest import AuthActions

    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0",
                      "LOGIN_RATE_LIMIT": "3 per minute", "ASYNC_MODE": "threading"})
    with app.app_context():
        upgrade(directory=str(PROJECT / "migrations"))
    auth = AuthActions(app, app.test_client())
    auth.create("gina")
    statuses = [auth.login("gina", f"guess {i}").status_code for i in range(3)]
    assert statuses == [401] * 3
    assert auth.login("gina", PASSWORD).status_code == 429
    # The limiter is one object for every app of this process, and init_app does not
    # forget that its storage died: later tests' apps would count in the fallback.
    limiter = app.extensions["limiter"]
    limiter = next(iter(limiter)) if isinstance(limiter, set) else limiter
    limiter._storage_dead = False


def test_session_cookie_is_httponly_and_lax(app, auth, client):
    auth.create("frank")
    response = auth.login("frank")

    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_when_served_over_tls(tmp_path):
    from app import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path), "TLS": True,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "ASYNC_MODE": "threading"})
    assert app.config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize("secret", [None, "", "changeme", "short-but-random-1234"])
def test_production_refuses_a_missing_or_weak_secret_key(tmp_path, secret):
    from app import create_app

    with pytest.raises(RuntimeError, match="PATCHBAY_SECRET_KEY"):
        create_app({"INSTANCE_PATH": str(tmp_path), "ENV": "production", "SECRET_KEY": secret,
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                    "ASYNC_MODE": "threading"})


def test_pages_carry_security_headers(client):
    headers = client.get("/login").headers

    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


def test_templates_have_no_inline_script_or_style():
    from tests.conftest import PROJECT

    for template in (PROJECT / "templates").rglob("*.html"):
        text = template.read_text()
        scripts = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", text)
        assert scripts == [], template
        assert not re.search(r"\son[a-z]+\s*=", text), template
        assert " style=" not in text, template


def test_runbook_files_changed_on_disk_are_audited(tmp_path):
    import os
    import shutil

    from app import create_app
    from extensions import db
    from models import AuditEntry
    from tests.conftest import TEST_RUNBOOKS

    books = tmp_path / "runbooks"
    books.mkdir()
    shutil.copy(TEST_RUNBOOKS / "sleepy.yml", books / "sleepy.yml")
    app = create_app({"INSTANCE_PATH": str(tmp_path), "RUNBOOK_DIR": str(books),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "ASYNC_MODE": "threading"})
    with app.app_context():
        from flask_migrate import upgrade

        from tests.conftest import PROJECT

        upgrade(directory=str(PROJECT / "migrations"))
        engine = console_services(app).engine
        engine.runbooks()
        edited = (books / "sleepy.yml").read_text().replace("napping", "dozing")
        (books / "sleepy.yml").write_text(edited)
        os.utime(books / "sleepy.yml", ns=(1, 1))  # a new stamp without waiting
        shutil.copy(TEST_RUNBOOKS / "ticker.yml", books / "ticker.yml")
        engine.runbooks()
        entry = db.session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.detail) == (
        "runbooks.changed", {"added": ["ticker"], "removed": [], "changed": ["sleepy"]})


# -- audit 3, item 3: forwarded addresses only from the proxies ------------------------

@pytest.fixture
def behind_nginx(monkeypatch, request):
    """The ``app`` fixture as a node behind one proxy (deploy/patchbay.env.example),
    with /metrics open to 192.0.2.7 only; the proxy's address is loopback (default)."""
    monkeypatch.setenv("PATCHBAY_TRUSTED_PROXIES", "1")
    monkeypatch.setenv("PATCHBAY_METRICS_ALLOW", "192.0.2.7")
    return request.getfixturevalue("app")


def _failed_logins(app, peer: str, forwarded: list[str]) -> list[int]:
    """One failed login per forged X-Forwarded-For, all from the TCP peer ``peer``."""
    from tests.conftest import AuthActions

    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = peer
    statuses = []
    for claimed in forwarded:
        client.environ_base["HTTP_X_FORWARDED_FOR"] = claimed
        statuses.append(AuthActions(app, client).login("nobody", "guess").status_code)
    return statuses


def _audited_addresses(app) -> set[str]:
    from extensions import db
    from models import AuditEntry

    with app.app_context():
        return set(db.session.scalars(select(AuditEntry.remote_addr).where(
            AuditEntry.action == "login.failed")))


def test_audit3_3_a_direct_client_is_judged_by_its_own_address_whatever_it_forwards(
        behind_nginx):
    rotating = [f"198.51.100.{i}" for i in range(12)]

    metrics = behind_nginx.test_client().get("/metrics", environ_base={
        "REMOTE_ADDR": "203.0.113.50", "HTTP_X_FORWARDED_FOR": "192.0.2.7"})
    statuses = _failed_logins(behind_nginx, "203.0.113.50", rotating)

    assert metrics.status_code == 401  # the allow list is not passed with a forged header
    assert statuses == [401] * 10 + [429] * 2  # one address: one login limit
    assert _audited_addresses(behind_nginx) == {"203.0.113.50"}


def test_audit3_3_a_trusted_proxy_forwards_the_client_address(behind_nginx):
    rotating = [f"198.51.100.{i}" for i in range(12)]

    metrics = behind_nginx.test_client().get("/metrics", environ_base={
        "REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "192.0.2.7"})
    statuses = _failed_logins(behind_nginx, "127.0.0.1", rotating)

    assert metrics.status_code == 200
    assert statuses == [401] * 12  # twelve clients behind the proxy, each its own limit
    assert _audited_addresses(behind_nginx) == set(rotating)


def test_audit3_3_the_proxies_addresses_are_configurable_and_checked(monkeypatch, request,
                                                                     tmp_path):
    from app import create_app

    monkeypatch.setenv("PATCHBAY_TRUSTED_PROXIES", "1")
    monkeypatch.setenv("PATCHBAY_TRUSTED_PROXY_ADDRESSES", "10.0.0.10, 10.0.1.0/24")
    app = request.getfixturevalue("app")

    def seen_from(peer: str) -> set[str]:
        _failed_logins(app, peer, ["192.0.2.99"])
        return _audited_addresses(app)

    assert seen_from("127.0.0.1") == {"127.0.0.1"}  # loopback is no longer a proxy
    assert seen_from("10.0.1.20") == {"127.0.0.1", "192.0.2.99"}
    monkeypatch.setenv("PATCHBAY_TRUSTED_PROXY_ADDRESSES", "10.0.0.10,nginx")
    with pytest.raises(RuntimeError, match="PATCHBAY_TRUSTED_PROXY_ADDRESSES: 'nginx' is not"):
        create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                    "ASYNC_MODE": "threading"})


# -- Slow clients (audit 3b, item 2) -----------------------------------------------------


def test_audit3b_2_slow_clients_do_not_stall_the_login(live_server_factory):
    import socket
    import time

    from tests.support.waiting import wait_until

    server = live_server_factory(env={"PATCHBAY_HEADER_TIMEOUT": "3",
                                      "PATCHBAY_MAX_CONNECTIONS_PER_ADDRESS": "50"})
    slow: list[socket.socket] = []
    try:
        for _ in range(300):  # each sends part of its headers, then nothing
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            conn.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(conn)
        started = time.monotonic()
        normal = socket.socket()
        normal.bind(("127.0.0.2", 0))  # another address: 127.0.0.1 is at its cap
        normal.settimeout(1)  # the bound: a normal login answers within 1 s
        normal.connect(("127.0.0.1", server.port))
        normal.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = normal.recv(64)
        answered = time.monotonic() - started
        normal.close()

        def closed(conn: socket.socket) -> bool:
            conn.setblocking(False)
            try:
                return conn.recv(1) == b""
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True

        wait_until(lambda: all(closed(conn) for conn in slow), 20,
                   "every slow connection closed (beyond the cap at once, "
                   "the rest at the header timeout)")
    finally:
        for conn in slow:
            conn.close()

    assert status.startswith(b"HTTP/1.1 200"), status
    assert answered < 1


def _mode(path) -> int:
    import stat
    return stat.S_IMODE(path.stat().st_mode)


def test_audit3b_7_a_fresh_instance_folder_and_database_are_private(tmp_path):
    """Whatever the umask (022 here, as `make demo` runs), the instance folder is 0700
    and the database, its WAL files and the session secret 0600."""
    from flask_migrate import upgrade

    from app import create_app

    old = os.umask(0o022)
    try:
        instance = tmp_path / "instance"
        app = create_app({"INSTANCE_PATH": str(instance), "ASYNC_MODE": "threading"})
        with app.app_context():
            upgrade(directory=str(PROJECT / "migrations"))
            db_file = instance / "patchbay.db"
            files = [db_file, instance / "secret_key"] + [
                instance / f"patchbay.db{suffix}" for suffix in ("-wal", "-shm")
                if (instance / f"patchbay.db{suffix}").exists()]
            modes = {path.name: _mode(path) for path in files}
    finally:
        os.umask(old)

    assert _mode(instance) == 0o700
    assert "patchbay.db-wal" in modes and "patchbay.db-shm" in modes
    assert modes == {path.name: 0o600 for path in files}


def test_audit3b_7_a_world_readable_instance_is_tightened_at_start(tmp_path, caplog,
                                                                  monkeypatch):

    from app import create_app

    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    instance.chmod(0o755)
    for name in ("patchbay.db", "patchbay.db-wal", "secret_key"):
        (instance / name).write_bytes(b"" if name != "secret_key" else b"a" * 64)
        (instance / name).chmod(0o644)

    with caplog.at_level("INFO", logger="patchbay.instance"):
        create_app({"INSTANCE_PATH": str(instance), "ASYNC_MODE": "threading"})

    assert _mode(instance) == 0o700
    assert {name: _mode(instance / name) for name in ("patchbay.db", "patchbay.db-wal",
                                                       "secret_key")} == dict.fromkeys(
        ("patchbay.db", "patchbay.db-wal", "secret_key"), 0o600)
    assert "readable by other accounts" in caplog.text


def _login_form_token(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def _start_job(client, csrf: str):
    return client.post("/api/jobs", headers={"X-CSRFToken": csrf}, json={
        "runbook": "basic", "params": {"message": "x"}, "servers": ["nope"]})


def test_audit3_6_a_csrf_token_planted_before_login_is_worthless_after_it(app, auth, client):
    auth.create("hana")
    planted = _login_form_token(client)  # what a fixated session's owner also knows
    response = client.post("/login", data={"username": "hana", "password": PASSWORD,
                                           "csrf_token": planted})
    assert response.status_code == 302

    refused = _start_job(client, planted)
    fresh = token_from(client.get("/").get_data(as_text=True))

    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "csrf"
    assert fresh != planted
    assert _start_job(client, fresh).get_json()["error"]["code"] != "csrf"


def test_audit3_6_logging_out_ends_the_csrf_token_of_the_session(app, auth, client):
    auth.create("iris")
    assert auth.login("iris").status_code == 302
    during = token_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": during}).status_code == 302

    again = client.post("/login", data={"username": "iris", "password": PASSWORD,
                                        "csrf_token": during})

    assert again.status_code == 400
    assert "CSRF" in again.get_data(as_text=True)
    assert auth.login("iris").status_code == 302  # the login page's new token works


def test_audit3_6_over_tls_the_session_cookie_is_a_host_cookie(tmp_path):
    from flask_migrate import upgrade

    from app import create_app
    from config import HOST_SESSION_COOKIE
    from tests.conftest import AuthActions

    app = create_app({"INSTANCE_PATH": str(tmp_path), "TLS": True, "SECRET_KEY": "x",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "ASYNC_MODE": "threading", "RUNBOOK_DIR": str(PROJECT / "tests" /
                                                                     "runbooks")})
    with app.app_context():
        upgrade(directory=str(PROJECT / "migrations"))
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    auth = AuthActions(app, client)
    auth.create("jon")

    cookie = auth.login("jon").headers["Set-Cookie"]
    named_in_api = client.get("/api/openapi.json").get_json()

    assert cookie.startswith(f"{HOST_SESSION_COOKIE}=")
    assert "Secure" in cookie and "Path=/;" in cookie and "Domain" not in cookie
    assert client.get("/api/jobs").status_code == 200  # read back under its name
    assert named_in_api["components"]["securitySchemes"]["session"]["name"] == \
        HOST_SESSION_COOKIE


def test_audit3_7_failures_from_many_addresses_slow_the_account_and_its_user_logs_in(
        app, auth, client, monkeypatch):
    import blueprints.pages.auth
    from extensions import db
    from models import AuditEntry
    from tasks.meters import REGISTRY

    def slowdowns() -> float:
        return REGISTRY.get_sample_value("patchbay_login_slowdowns_total") or 0

    waits: list[float] = []
    monkeypatch.setattr(blueprints.pages.auth, "wait_before_answer", waits.append)
    auth.create("kate")
    auth.create("liam")
    before = slowdowns()

    def attempt(number: int, username: str = "kate", password: str = "a guess") -> int:
        client.environ_base["REMOTE_ADDR"] = f"198.51.{number // 250}.{number % 250 + 1}"
        return auth.login(username, password).status_code

    first = [attempt(n) for n in range(20)]  # each address well inside its own limits
    waits_at_threshold = list(waits)
    further = [attempt(n) for n in range(20, 31)]
    other_account = attempt(31, "liam")
    waits_before_the_user = list(waits)
    real_user = attempt(32, "kate", PASSWORD)

    assert first == [401] * 20 and waits_at_threshold == []
    assert further == [401] * 11
    assert waits_before_the_user == [1.0] * 10 + [2.0]  # doubling every 10 failures
    assert other_account == 401
    assert real_user == 302 and waits[-1] == 2.0  # slowed, never locked out
    assert client.get("/api/jobs").status_code == 200
    assert slowdowns() == before + 1
    with app.app_context():
        slowed = db.session.scalars(select(AuditEntry).where(
            AuditEntry.action == "login.slowed")).all()
    assert [(entry.username, entry.detail["failures"]) for entry in slowed] == [("kate", 20)]


def test_audit3_7_the_slow_down_grows_to_its_cap_and_its_settings_are_checked(tmp_path):
    from app import create_app
    from services.auth.login_slowdown import Slowdown

    rule = Slowdown.from_config("20 per 15 minutes", 30)
    delays = [rule.delay(failures) for failures in (0, 19, 20, 29, 30, 40, 50, 60, 500)]

    assert (rule.after, rule.window_seconds) == (20, 900)
    assert delays == [0, 0, 1, 1, 2, 4, 8, 16, 30]
    for setting in ({"LOGIN_ACCOUNT_SLOWDOWN": "lots"}, {"LOGIN_SLOWDOWN_MAX_DELAY": -1}):
        with pytest.raises(RuntimeError, match="PATCHBAY_LOGIN_ACCOUNT_SLOWDOWN"):
            create_app({"INSTANCE_PATH": str(tmp_path), "ASYNC_MODE": "threading",
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                        **setting})
