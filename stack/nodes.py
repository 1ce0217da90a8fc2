"""Console nodes started exactly as the shipped systemd unit starts them.

The command line comes from ``deploy/patchbay-node.service``: its ``ExecStart`` with
``${VAR}`` expanded from the node's environment as systemd does, and ``/opt/patchbay``
(where the unit expects the project) replaced by this checkout and its virtualenv. So
what ``make cluster`` and the tests run is what production runs.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from stack.processes import dies_with_us, stop_process, wait_for_port

PROJECT_DIR = Path(__file__).resolve().parent.parent
UNIT_FILE = PROJECT_DIR / "deploy" / "patchbay-node.service"
INSTALL_DIR = "/opt/patchbay"  # where the unit expects the project
ADDRESS = "127.0.0.1"

_VARIABLE = re.compile(r"\$\$|\$\{(\w+)\}")
_WHOLE_WORD_VARIABLE = re.compile(r"\$(\w+)")


def unit_setting(name: str, unit: str | None = None) -> str:
    """The value of ``name=`` in the unit's ``[Service]`` section (the last one wins,
    as in systemd; continuation lines are joined)."""
    text = UNIT_FILE.read_text() if unit is None else unit
    text = re.sub(r"\\\n", " ", text)
    section, value = None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and line.startswith(f"{name}="):
            value = line[len(name) + 1:]
    if value is None:
        raise ValueError(f"{UNIT_FILE.name} has no {name}= in [Service]")
    return value


def expand(word: str, env: Mapping[str, str]) -> str:
    """``${VAR}`` replaced by its value and ``$$`` by ``$``, as systemd does inside a
    word. An unset variable is an error here (systemd would put an empty string, and a
    node bound to ``:5000`` is not what anyone meant)."""
    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name not in env:
            raise ValueError(f"{UNIT_FILE.name}'s ExecStart needs {name}, which the "
                           "environment does not set")
        return env[name]

    return _VARIABLE.sub(value, word)


def exec_start(env: Mapping[str, str], unit: str | None = None) -> list[str]:
    """The unit's ExecStart as an argument list for this checkout: variables expanded
    (``$VAR`` alone as a word is split at whitespace, like systemd), and paths under
    /opt/patchbay moved to the project and its virtualenv."""
    command: list[str] = []
    for word in shlex.split(unit_setting("ExecStart", unit)):
        whole = _WHOLE_WORD_VARIABLE.fullmatch(word)
        if whole:
            command += expand(f"${{{whole.group(1)}}}", env).split()
        else:
            command.append(expand(word, env))
    return [_local_path(word) for word in command]


def working_directory(unit: str | None = None) -> Path:
    """The unit's WorkingDirectory, moved from /opt/patchbay to the project."""
    return Path(_local_path(unit_setting("WorkingDirectory", unit)))


def _local_path(word: str) -> str:
    """/opt/patchbay/.venv/... -> our virtualenv; /opt/patchbay/... -> the project."""
    venv = f"{INSTALL_DIR}/.venv"
    if word == venv or word.startswith(f"{venv}/"):
        return sys.prefix + word[len(venv):]
    if word == INSTALL_DIR or word.startswith(f"{INSTALL_DIR}/"):
        return str(PROJECT_DIR) + word[len(INSTALL_DIR):]
    return word


class NodeProcess:
    """One console node (gunicorn, as the unit starts it) on 127.0.0.1:``port``.

    ``env`` is the node's whole environment (what the unit's EnvironmentFile would
    give it); ``PATCHBAY_PORT`` is set to ``port``, and ``PATCHBAY_HOST`` to 127.0.0.1
    unless ``env`` has one. Its output goes to ``log_path``."""

    def __init__(self, name: str, port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.env = {"PATCHBAY_HOST": ADDRESS, **env, "PATCHBAY_PORT": str(port)}
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """None while it runs; its exit code (negative: killed by that signal) after."""
        return self.process.poll() if self.process is not None else None

    def command(self) -> list[str]:
        return exec_start(self.env)

    def start(self, timeout: float = 60) -> None:
        """Start the node and return once it answers HTTP. RuntimeError with the end
        of its log if it exits first or does not answer within ``timeout`` seconds."""
        if self.alive:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C at the terminal reaches whoever runs us, and
            # they stop the node (gracefully) in their own order.
            self.process = subprocess.Popen(
                self.command(), cwd=working_directory(), env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=dies_with_us())
        try:
            deadline = time.monotonic() + timeout
            wait_for_port(ADDRESS, self.port, timeout=timeout, process=self.process)
            self._wait_until_serving(deadline)
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise RuntimeError(f"{self.name} did not start on port {self.port}: {error}\n"
                               f"{self.log_tail()}") from None

    def _wait_until_serving(self, deadline: float) -> None:
        """gunicorn's master listens before its worker has loaded the app (which may
        still fail): wait for a real HTTP answer, whatever its status."""
        while True:
            connection = http.client.HTTPConnection(
                ADDRESS, self.port, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            try:
                connection.request("GET", "/login")
                connection.getresponse().read()
                return
            except (OSError, http.client.HTTPException) as error:
                if not self.alive:
                    raise RuntimeError(f"gunicorn exited with code {self.returncode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no HTTP answer: {error}") from None
                time.sleep(0.05)  # polling interval of a deadline loop
            finally:
                connection.close()

    def stop(self, timeout: float = 40) -> None:
        """SIGTERM, as systemd stops the unit: gunicorn stops its worker gracefully;
        SIGKILL if it is still there after ``timeout`` seconds (the unit's
        TimeoutStopSec), and then whatever is left of its process group (as
        KillMode=mixed does)."""
        stop_process(self.process, timeout=timeout)
        self._kill_group()

    def kill9(self) -> None:
        """Die like a crash: gunicorn and its worker get SIGKILL at once, nothing is
        cleaned up or marked."""
        self._kill_group()
        if self.process is not None:
            self.process.wait()

    def _kill_group(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: pgid == pid

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)
