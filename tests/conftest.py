"""Shared fixtures: app, client, auth, a real OpenSSH fleet, a real server process,
and a real browser.

In CI (``CI=true``) a missing tool (sshd, Chromium) fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("PATCHBAY_ASYNC_MODE") == "gevent":  # engine tests run green too
    from gevent import monkey

    monkey.patch_all()

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.databases import drop_created, fresh_database_url, postgres_server
from tests.support.live_server import LiveServer, start_live_server
from tests.support.sshd_fleet import SshdFleet, sshd_available, start_fleet

PROJECT = Path(__file__).resolve().parent.parent
TEST_RUNBOOKS = PROJECT / "tests" / "runbooks"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
LOG_TAIL_LINES = 60


def require_tool(available: bool, what: str) -> None:
    """Skip locally, fail in CI, when a real part is missing."""
    if available:
        return
    message = f"{what} is not installed (run `make test` as root, or see the README)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sshd_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdFleet]:
    """Eight OpenSSH servers on 127.0.0.101-108 (one sshd, one port), shared by the session."""
    require_tool(sshd_available(), "OpenSSH sshd")
    fleet = start_fleet(tmp_path_factory.mktemp("sshd"), 8)
    yield fleet
    fleet.stop()


def write_inventory(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"servers": entries}))
    return path


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """PostgreSQL pass: the databases a test made (``tests/support/databases.py``) go after it."""
    yield
    if postgres_server():
        drop_created()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator:
    """A private PostgreSQL server for the session (``stack.postgres``), fsync off.

    Its folder is a ``tempfile.mkdtemp()`` under the system temp dir, not pytest's
    (``/tmp/pytest-of-root`` is mode 700: the postgres user could not reach it)."""
    import shutil
    import tempfile

    from stack import postgres
    from stack.processes import free_port

    require_tool(postgres.available(), "PostgreSQL (postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="patchbay-test-postgres-"))
    server = postgres.PrivatePostgres(directory, free_port(), settings=postgres.THROWAWAY)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def app(tmp_path: Path):
    """A fresh app on its own database (a file, or a PostgreSQL database in the
    PostgreSQL pass), migrated like production."""
    from flask_migrate import upgrade

    from app import create_app

    application = create_app({
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SQLALCHEMY_DATABASE_URI": fresh_database_url(tmp_path),
        "SECRET_KEY": "test-secret",
        "ASYNC_MODE": "threading",
        "RUNBOOK_DIR": str(TEST_RUNBOOKS),
        "WTF_CSRF_ENABLED": True,
        "KILL_GRACE": 2,
    })
    with application.app_context():
        upgrade(directory=str(PROJECT / "migrations"))
    return application


@pytest.fixture
def client(app):
    return app.test_client()


def page_csrf_token(client) -> str:
    """The CSRF token a page of the console gives its scripts (a logged-in client)."""
    import re

    page = client.get("/").get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    return match.group(1) if match else ""


def socket_test_client(app, client):
    """Flask-SocketIO's test client on ``client``'s session, sending the page's CSRF
    token in the handshake as the console's pages do."""
    from extensions import socketio

    return socketio.test_client(app, flask_test_client=client,
                                auth={"csrf_token": page_csrf_token(client)})


class AuthActions:
    """Log in and out through the real login form (CSRF token included)."""

    def __init__(self, app, client) -> None:
        self.app = app
        self.client = client

    def create(self, username: str = "alice", password: str = PASSWORD,
               role: str = "operator") -> None:
        runner = self.app.test_cli_runner()
        result = runner.invoke(args=["create-user", username, "--role", role,
                                     "--password", password])
        assert result.exit_code == 0, result.output

    def login(self, username: str = "alice", password: str = PASSWORD):
        import re

        page = self.client.get("/login").get_data(as_text=True)
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        token = match.group(1) if match else ""
        return self.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": token})


@pytest.fixture
def auth(app, client) -> AuthActions:
    return AuthActions(app, client)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    """Keep each phase's report on the item, so fixtures can tell that a test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def live_server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """Start real server processes (``python app.py``); stopped after the test. When the
    test failed, each server's log tail goes to stderr (shown with the failure in CI)."""
    servers: list[LiveServer] = []

    def start(**kwargs) -> LiveServer:
        server = start_live_server(tmp_path / f"live{len(servers)}", **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    call = getattr(request.node, "report_call", None)
    if call is not None and call.failed:
        for number, server in enumerate(servers):
            tail = "\n".join(server.log().splitlines()[-LOG_TAIL_LINES:])
            print(f"--- server {number} log (last {LOG_TAIL_LINES} lines) ---\n{tail}",
                  file=sys.stderr)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    require_tool(Path(CHROMIUM).exists(), "Chromium (/usr/bin/chromium)")
    return CHROMIUM


@pytest.fixture
def browser(chromium_path: str) -> Iterator:
    """A headless Chromium driven by Playwright (Debian's build; no downloads)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"])
        yield instance
        instance.close()



@pytest.fixture(scope="session")
def demo_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The demo fleet of ``make run`` (asyncssh, 8 hosts on 127.0.0.151-158), as a process."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from tests.support.sshd_fleet import free_port

    state = tmp_path_factory.mktemp("demo-fleet")
    ready = state / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "demo.sshfleet", "--state-dir", str(state / "fleet"),
         "--count", "8", "--first-address", "127.0.0.151", "--ssh-port", str(free_port()),
         "--game-port", str(free_port()), "--ready-file", str(ready), "--stop-games"],
        cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(state / "fleet.log", "wb"))  # noqa: SIM115 - owned by the child
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"demo fleet did not start:\n{(state / 'fleet.log').read_text()}")
        time.sleep(0.1)  # polling interval of a deadline loop
    yield json.loads(ready.read_text())
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
