"""A private Redis server from Debian's ``redis-server``: loopback only, a port of ours,
nothing written to disk but its log, all inside one folder of ours. It asks for a password
(``requirepass``), generated once and kept in ``password`` (mode 600) in that folder:
whoever reaches the port could otherwise publish Socket.IO messages to every browser
and reset the login limiter's counters.

Nodes use it as the Socket.IO message queue and the login limiter's storage; both hold
only short-lived state, so there is no persistence (no RDB snapshots, no AOF).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stack.processes import dies_with_us, stop_process

REDIS_SERVER = "/usr/bin/redis-server"
ADDRESS = "127.0.0.1"


def available() -> bool:
    """Is Debian's redis-server installed?"""
    return Path(REDIS_SERVER).is_file()


def _quoted(value: str) -> str:
    """A redis.conf string argument (double-quoted, backslashes and quotes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PrivateRedis:
    """``redis-server`` on 127.0.0.1:``port`` with ``directory`` holding its config
    (``redis.conf``), working folder and log (``redis.log``)."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = Path(directory).absolute()
        self.port = port
        self.config_path = self.directory / "redis.conf"
        self.log_path = self.directory / "redis.log"
        self.password_path = self.directory / "password"
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        """The URL clients use, password included: pass it on, never print it."""
        return f"redis://:{self.password}@{ADDRESS}:{self.port}/{db}"

    def public_url(self, db: int = 0) -> str:
        """The URL without its password, for banners and logs."""
        return f"redis://:***@{ADDRESS}:{self.port}/{db}"

    @property
    def password(self) -> str:
        """Made (mode 600) the first time it is needed, the same afterwards."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.password_path.exists():
            fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        return self.password_path.read_text().strip()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 30) -> None:
        """Start the server and return once it answers PING. RuntimeError (with the end
        of its log) if it exits or does not answer within ``timeout`` seconds."""
        if self.process is not None and self.process.poll() is None:
            return
        if not available():
            raise RuntimeError(f"{REDIS_SERVER} is not installed "
                               "(Debian: apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        # Mode 600 before the password goes in: it is the server's requirepass.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self._config())
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C at the terminal reaches whoever runs us, and
            # they stop Redis after everything that uses it.
            self.process = subprocess.Popen(
                [REDIS_SERVER, str(self.config_path)], cwd=self.directory,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=dies_with_us())
        try:
            self._wait_until_ours(time.monotonic() + timeout)
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise RuntimeError(f"Redis did not start in {self.directory} on port "
                               f"{self.port}: {error}\n{self.log_tail()}") from None

    def stop(self) -> None:
        """SIGTERM (Redis exits at once: nothing to save), and wait for it."""
        process, self.process = self.process, None
        stop_process(process)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)

    def _config(self) -> str:
        # Everything comes from this file: Debian's /etc/redis/redis.conf is not read.
        # The log goes to stdout, which start() sends to redis.log, so that errors in
        # the config itself (reported before any logfile is opened) land there too.
        return "\n".join([
            f"bind {ADDRESS}",
            f"port {self.port}",
            "protected-mode yes",
            f"requirepass {_quoted(self.password)}",
            "daemonize no",
            'logfile ""',
            'save ""',
            "appendonly no",
            f"dir {_quoted(str(self.directory))}",
            "",
        ])

    def _wait_until_ours(self, deadline: float) -> None:
        """PING until it answers, and make sure the server answering is our process
        (another Redis already on the port would answer too)."""
        # No retries inside ping(): this loop retries, and checks the process between.
        client = redis.Redis(host=ADDRESS, port=self.port, password=self.password,
                             socket_connect_timeout=1,
                             socket_timeout=1, retry=Retry(NoBackoff(), 0))
        try:
            while True:
                self._check_running()
                try:
                    if client.ping():
                        break
                except redis.exceptions.RedisError as error:  # refused, or no answer
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no answer to PING: {error}") from None
                    time.sleep(0.05)  # polling interval of a deadline loop
            answering = client.info("server")["process_id"]
        finally:
            client.close()
        self._check_running()
        if answering != self.process.pid:
            raise RuntimeError(f"another Redis (pid {answering}) answers on port {self.port}")

    def _check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
