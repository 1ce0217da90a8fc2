"""A real Patchbay server process (``python app.py``) on a free port, for tests and
benchmarks, plus a logged-in HTTP session and Socket.IO client for it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import socketio

from tests.support.databases import fresh_database_url
from tests.support.sshd_fleet import free_port, wait_for_port

PROJECT = Path(__file__).resolve().parents[2]
DEFAULT_PASSWORD = "correct horse battery"


@dataclass
class LiveServer:
    directory: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.directory / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen([sys.executable, str(PROJECT / "app.py")],
                                        cwd=PROJECT, env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for_port("127.0.0.1", self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"server did not start:\n{self.log()}") from None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill9(self) -> None:
        """Die like a crash: no cleanup, no chance to mark anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def login(self, username: str = "alice", password: str = DEFAULT_PASSWORD
              ) -> requests.Session:
        """A requests session logged in through the real form (CSRF included)."""
        return login(self.url, username, password)

    def socket(self, http: requests.Session | None, transports: list[str] | None = None,
               **client_options: Any) -> socketio.Client:
        """A connected python-socketio client sharing ``http``'s session cookie."""
        client = socketio.Client(http_session=http, reconnection=False, **client_options)
        client.connect(self.url, transports=transports or ["websocket"], wait_timeout=10,
                       auth=handshake(http))
        return client


def login(url: str, username: str, password: str) -> requests.Session:
    """A requests session logged in to the console at ``url`` through the real form,
    with the page's CSRF token (made at login) in its ``X-CSRFToken`` header."""
    http = requests.Session()
    page = http.get(f"{url}/login", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = http.post(f"{url}/login", timeout=10, allow_redirects=False,
                         data={"username": username, "password": password,
                               "csrf_token": token})
    assert response.status_code == 302, response.text[:500]
    http.headers["X-CSRFToken"] = session_csrf_token(http, url)
    return http


def session_csrf_token(http: requests.Session, url: str) -> str:
    """The CSRF token a page gives a logged-in session (login makes a new one: the
    login form's token is worthless after it)."""
    page = http.get(f"{url}/", timeout=10).text
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def handshake(http: requests.Session | None) -> dict[str, str] | None:
    """What the console's pages send when their socket connects: the CSRF token of the
    session (``login`` keeps it in the session's ``X-CSRFToken`` header)."""
    if http is None or "X-CSRFToken" not in http.headers:
        return None
    return {"csrf_token": http.headers["X-CSRFToken"]}


def prepare_database(directory: Path, *, inventory: Path | None, runbook_dir: Path,
                     users: list[tuple[str, str, str]], url: str | None = None) -> str:
    """Migrate a fresh database (``url``, or a new one for this test) and fill it (in
    this process, before the server starts)."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from app import create_app
    from extensions import db
    from models import User
    from tasks.planning.inventory import apply_inventory, parse_inventory

    url = url or fresh_database_url(directory)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(directory),
                      "SECRET_KEY": "x", "ASYNC_MODE": "threading",
                      "RUNBOOK_DIR": str(runbook_dir)})
    with app.app_context():
        upgrade(directory=str(PROJECT / "migrations"))
        for username, password, role in users:
            if db.session.scalar(select(User).where(User.username == username)) is None:
                user = User(username=username, role=role)
                user.set_password(password)
                db.session.add(user)
        if inventory is not None:
            apply_inventory(db.session, parse_inventory(inventory.read_text(), str(inventory)))
        db.session.commit()
        db.engine.dispose()
    return url


def start_live_server(directory: Path, *, inventory: Path | None = None,
                      runbook_dir: Path | None = None,
                      users: list[tuple[str, str, str]] | None = None,
                      env: dict[str, str] | None = None) -> LiveServer:
    directory.mkdir(parents=True, exist_ok=True)
    runbook_dir = runbook_dir or PROJECT / "tests" / "runbooks"
    url = prepare_database(directory, inventory=inventory, runbook_dir=runbook_dir,
                           users=users or [("alice", DEFAULT_PASSWORD, "operator")])
    port = free_port()
    server_env = {
        **os.environ,
        "PATCHBAY_PORT": str(port),
        "PATCHBAY_INSTANCE_PATH": str(directory),
        "DATABASE_URL": url,
        "PATCHBAY_SECRET_KEY": "live-test-secret",
        "PATCHBAY_RUNBOOK_DIR": str(runbook_dir),
        "PATCHBAY_KILL_GRACE": "2",
        "PATCHBAY_ASYNC_MODE": os.environ.get("PATCHBAY_ASYNC_MODE", "eventlet"),
        **(env or {}),
    }
    server = LiveServer(directory, port, server_env)
    server.start()
    return server
