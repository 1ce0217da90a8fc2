"""A private PostgreSQL server from Debian's packages: its own data directory, a
loopback port and a unix socket directory, all inside one folder of ours.

PostgreSQL refuses to run as root. When this process is root, ``initdb`` and
``postgres`` run as the ``postgres`` user (``subprocess`` switches user before exec,
so the server stays our direct child and gets our signals, unlike ``runuser``, which
turns every signal into TERM and then KILL). The folder is then owned by that user,
and every folder above it must let that user through (search permission): pytest's
``/tmp/pytest-of-root`` is mode 700, so put the folder under a traversable one such
as ``tempfile.mkdtemp()`` (what ``run`` without ``--dir`` and the test fixture do);
:meth:`PrivatePostgres.start` names the folder in the way if one blocks it.

    python -m stack.postgres run [--dir D] [--port P] -- CMD ARGS...

starts a server, creates the database ``patchbay`` and runs CMD with ``DATABASE_URL``
set to it; it exits with CMD's exit code and stops the server on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from stack.processes import dies_with_us, free_port, stop_process, wait_for_port

SERVER_USER = "postgres"
SUPERUSER = "patchbay"
ADDRESS = "127.0.0.1"
# Settings for a throwaway server (tests): nothing is fsynced, so a power cut loses it.
THROWAWAY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_SOCKET_PATH_MAX = 107  # sun_path, minus the terminating NUL


def bindir() -> Path | None:
    """Where PostgreSQL's server programs are: ``pg_config --bindir`` if it has
    ``postgres``, else the newest ``/usr/lib/postgresql/*/bin``; None if neither."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                   timeout=10, check=True).stdout.strip()
            if found and (Path(found) / "postgres").is_file():
                return Path(found)
    candidates = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    if not candidates:
        return None
    return max(candidates, key=lambda path: _version_key(path.parent.name))


def available() -> bool:
    """Can a private server run here (server programs installed, and a user to run it
    as when we are root)?"""
    if bindir() is None:
        return False
    if os.geteuid() != 0:
        return True
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return False
    return True


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def server_url(url: str, database: str) -> str:
    """``url`` (``postgresql+psycopg://...``) with its database replaced."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _connect(url: str, timeout: float = 10):
    """An autocommit psycopg connection to ``url`` (a SQLAlchemy-style URL)."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host or ADDRESS, port=parsed.port or 5432, user=parsed.username,
        password=parsed.password, dbname=parsed.database,
        connect_timeout=max(1, int(timeout)), autocommit=True)


def create_database(url: str, name: str) -> str:
    """CREATE DATABASE ``name`` (unless it exists) on the server of ``url``; returns the
    URL of the new database."""
    from psycopg import errors, sql

    with _connect(server_url(url, "postgres")) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                    (name,)).fetchone()
        if not exists:
            with contextlib.suppress(errors.DuplicateDatabase):  # made meanwhile: fine
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_url(url, name)


def drop_database(url: str, name: str) -> None:
    """DROP DATABASE ``name`` on the server of ``url``, ending its sessions."""
    from psycopg import sql

    with _connect(server_url(url, "postgres")) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                           .format(sql.Identifier(name)))


class PrivatePostgres:
    """A private PostgreSQL server: its own data directory, loopback port and socket dir.

    ``directory`` holds ``data/`` (the cluster, kept between starts), ``socket/`` and
    ``postgres.log``; the server listens on 127.0.0.1:``port`` only and lets the
    superuser ``patchbay`` in without a password (trust: loopback, a private port).
    ``settings`` are extra server settings (``THROWAWAY`` for tests)."""

    def __init__(self, directory: Path, port: int, *,
                 settings: dict[str, str] | None = None) -> None:
        self.directory = Path(directory).absolute()
        self.port = port
        self.settings = dict(settings or {})
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "socket"
        self.log_path = self.directory / "postgres.log"
        self.process: subprocess.Popen | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """initdb if the data directory is new, start the server, and return once it
        accepts connections. RuntimeError (with the end of the server log) if not."""
        if self.process is not None and self.process.poll() is None:
            return
        programs = bindir()
        if programs is None:
            raise RuntimeError("PostgreSQL's server programs are not installed "
                               "(Debian: apt-get install postgresql)")
        self._prepare_directory()
        if not (self.data / "PG_VERSION").exists():
            self._initdb(programs, timeout)
        command = [str(programs / "postgres"), "-D", str(self.data), "-p", str(self.port),
                   "-c", f"listen_addresses={ADDRESS}",
                   "-c", f"unix_socket_directories={self._socket_setting()}"]
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            # A session of its own: a Ctrl-C at the terminal reaches whoever runs us,
            # and we stop the server after them (not under their feet).
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            # Fast shutdown if we die: sessions ended.
                                            preexec_fn=dies_with_us(signal.SIGINT),
                                            **self._as_server_user())
        try:
            deadline = time.monotonic() + timeout
            wait_for_port(ADDRESS, self.port, timeout=timeout, process=self.process)
            self._wait_until_accepting(deadline)
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start in {self.directory} on port "
                               f"{self.port}: {error}\n{self.log_tail()}") from None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, nothing is lost), and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(process)

    # -- databases ------------------------------------------------------------------

    def url(self, database: str = "patchbay") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{ADDRESS}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE (if it does not exist); returns ``url(name)``."""
        return create_database(self.url(), name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ... WITH (FORCE): its open sessions are ended first."""
        drop_database(self.url(), name)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)

    # -- the parts ------------------------------------------------------------------

    def _as_server_user(self) -> dict:
        """``subprocess`` arguments that run a program as the postgres user when we are
        root (PostgreSQL refuses root), as ourselves otherwise."""
        if os.geteuid() != 0:
            return {}
        user = pwd.getpwnam(SERVER_USER)
        groups = [group for group in os.getgrouplist(SERVER_USER, user.pw_gid)
                  if group != user.pw_gid]
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": groups,
                "env": {**os.environ, "HOME": user.pw_dir, "USER": SERVER_USER,
                        "LOGNAME": SERVER_USER}}

    def _prepare_directory(self) -> None:
        created = [path for path in (*reversed(self.directory.parents), self.directory)
                   if not path.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam(SERVER_USER)
        for path in created[:-1]:  # folders we made above ours: let the server through
            path.chmod(path.stat().st_mode | 0o001)
        for path in (self.directory, self.socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
        self._check_reachable(user)

    def _check_reachable(self, user: pwd.struct_passwd) -> None:
        """Every folder above ours must let the postgres user through."""
        groups = set(os.getgrouplist(SERVER_USER, user.pw_gid))
        for path in self.directory.parents:
            status = path.stat()
            if status.st_uid == user.pw_uid:
                allowed = status.st_mode & 0o100
            elif status.st_gid in groups:
                allowed = status.st_mode & 0o010
            else:
                allowed = status.st_mode & 0o001
            if not allowed and not self._server_user_can_enter(path):
                raise RuntimeError(
                    f"the {SERVER_USER} user cannot enter {path} (mode "
                    f"{status.st_mode & 0o777:o}), so it cannot reach {self.directory}: "
                    f"put the server's folder under one it can traverse "
                    f"(e.g. tempfile.mkdtemp())")

    def _server_user_can_enter(self, path: Path) -> bool:
        """The exact answer (ACLs included), asked only when the mode bits say no."""
        done = subprocess.run(["test", "-x", str(path)], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=10, check=False,
                              **self._as_server_user())
        return done.returncode == 0

    def _socket_setting(self) -> str:
        """The socket directory, or none at all if its path is too long for a socket."""
        if len(str(self.socket_dir / f".s.PGSQL.{self.port}.lock")) > _SOCKET_PATH_MAX:
            return ""
        return str(self.socket_dir)

    def _initdb(self, programs: Path, timeout: float) -> None:
        with open(self.log_path, "ab") as log:
            self._run_logged([str(programs / "initdb"), "-D", str(self.data),
                              "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                              "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
                             log, timeout)

    def _run_logged(self, command: list[str], log: IO[bytes], timeout: float) -> None:
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False,
                                  **self._as_server_user())
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{Path(command[0]).name} took over {timeout} s\n"
                               f"{self.log_tail()}") from None
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed (exit {done.returncode})\n"
                               f"{self.log_tail()}")

    def _wait_until_accepting(self, deadline: float) -> None:
        """The port opens before the server is ready ("the database system is starting
        up"): try real connections until one works."""
        import psycopg

        while True:
            try:
                _connect(self.url("postgres"), timeout=5).close()
                return
            except psycopg.OperationalError as error:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"postgres exited with code "
                                       f"{self.process.returncode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no connection accepted: {error}") from None
                time.sleep(0.05)  # polling interval of a deadline loop


# -- python -m stack.postgres run ------------------------------------------------------


def _run(options: argparse.Namespace) -> int:
    command = list(options.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("stack.postgres run: give the command to run after --", file=sys.stderr)
        return 2
    temporary = options.dir is None
    directory = Path(tempfile.mkdtemp(prefix="patchbay-postgres-")) if temporary \
        else Path(options.dir)
    server = PrivatePostgres(directory, options.port or free_port(), settings=THROWAWAY)

    def terminated(signum, _frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    child: subprocess.Popen | None = None
    try:
        server.start()
        url = server.create_database("patchbay")
        print(f"stack.postgres: PostgreSQL in {directory}; DATABASE_URL={url}",
              file=sys.stderr, flush=True)
        child = subprocess.Popen(command, env={**os.environ, "DATABASE_URL": url})
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # the terminal sent it to the command too
                continue
        return code if code >= 0 else 128 - code
    except RuntimeError as error:
        print(f"stack.postgres: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_process(child)
        server.stop()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.postgres",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser(
        "run", help="run a command against a private, throwaway PostgreSQL server",
        description="Start a private PostgreSQL server (fsync off: for tests), create the "
                    "database patchbay, run CMD with DATABASE_URL set to it, stop the "
                    "server, exit with CMD's exit code.")
    run.add_argument("--dir", help="folder for the server (default: a temporary one, "
                                   "removed afterwards); kept between runs")
    run.add_argument("--port", type=int, help="loopback port (default: a free one)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    options = parser.parse_args(argv)
    return _run(options)


if __name__ == "__main__":
    sys.exit(main())
