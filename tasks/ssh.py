"""SSH transport: connect to one server, run commands streaming their output, stop them.

Everything SSH-specific lives here: host-key checking, timeouts, the process-group
wrapper that makes a remote command killable, and incremental output decoding.

Fabric's :class:`~fabric.Connection` opens and authenticates the connection (one per
server per job; every step reuses it). Steps run on a paramiko channel of that
connection that we read ourselves: Fabric's runner decodes each 1,000-byte chunk on its
own (splitting multi-byte UTF-8) and keeps the whole output in memory, while here output
goes through an incremental decoder and only the current partial line is buffered.

A remote command does not die when its channel closes (no pty), so every step is wrapped
to run in its own session under ``setsid`` and to print its process-group id first;
stopping it means ``kill -s TERM -- -PGID`` (a form dash's builtin accepts too)
over a second channel, then KILL after a grace
period. The short control commands go through Fabric's ``run`` with ``in_stream=False``
(otherwise it reads our stdin, which eventlet refuses to share).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import logging
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

log = logging.getLogger(__name__)

PGID_MARKER = "@@patchbay-pgid "
MAX_LINE_CHARS = 16_384  # longer lines are cut into pieces rather than buffered whole
READ_CHUNK = 65_536
TICK_SECONDS = 0.1
EOF_GRACE = 2.0  # seconds to wait for end of output after the exit status


class SSHError(Exception):
    """A connection-level failure, with a one-line reason fit for the job page."""


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect. ``key_path`` is a path, never key material."""

    name: str
    address: str
    port: int
    user: str
    key_path: str | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False


@dataclass
class CommandResult:
    exit_code: int | None
    stopped: str | None = None  # "timeout" or "cancel" when we stopped it
    lost: bool = False  # the connection dropped before the command ended


LineSink = Callable[[str, str], None]  # (stream, line) -> None


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys, naming the fingerprint so an operator can check it."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise SSHError(
            f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} "
            "is not in known_hosts")


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use: record the key in the known_hosts file."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.path:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="ascii") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _LineSplitter:
    """Turns decoded chunks of one stream into lines, keeping only the partial tail."""

    def __init__(self, stream: str, sink: LineSink) -> None:
        self.stream = stream
        self.sink = sink
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tail = ""

    def feed(self, data: bytes) -> None:
        text = self.tail + self.decoder.decode(data)
        lines = text.split("\n")
        self.tail = lines.pop()
        for line in lines:
            self._emit_cut(line)
        while len(self.tail) > MAX_LINE_CHARS:
            self._emit(self.tail[:MAX_LINE_CHARS])
            self.tail = self.tail[MAX_LINE_CHARS:]

    def _emit_cut(self, line: str) -> None:
        while len(line) > MAX_LINE_CHARS:
            self._emit(line[:MAX_LINE_CHARS])
            line = line[MAX_LINE_CHARS:]
        self._emit(line)

    def close(self) -> None:
        text = self.tail + self.decoder.decode(b"", final=True)
        self.tail = ""
        if text:
            self._emit_cut(text)

    def _emit(self, line: str) -> None:
        self.sink(self.stream, line.removesuffix("\r"))


_known_hosts_files: dict[Path, tuple[tuple[int, int, int], paramiko.HostKeys]] = {}


def known_host_keys(path: Path) -> paramiko.HostKeys:
    """The parsed known_hosts file at ``path``, parsed again only when it changes.

    paramiko's parser is quadratic (about 0.2 ms per line at 1,000 lines): parsing a
    fleet's file once per connection cost more CPU than everything else a server needs.
    """
    stat = path.stat()
    version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _known_hosts_files.get(path)
    if cached is None or cached[0] != version:
        cached = (version, paramiko.HostKeys(str(path)))
        _known_hosts_files[path] = cached
    return cached[1]


def wrap_command(command: str) -> str:
    """Run ``command`` in a new session whose id (= its process group) is printed first.

    The command is the rest of the session shell's own script, on the marker's line so
    that its line numbers stay its own, rather than a further ``sh -c``: one process
    fewer on the server for every step."""
    script = f'printf "{PGID_MARKER}%s\\n" "$$"; {command}'
    return f"exec setsid -w /bin/sh -c {shlex.quote(script)}"


class SSHSession:
    """One authenticated connection to one server, reused for all of a job's steps."""

    def __init__(self, target: Target, connect_timeout: float = 10,
                 kill_grace: float = 5) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.kill_grace = kill_grace
        connect_kwargs: dict[str, object] = {
            "allow_agent": target.key_path is None,
            "look_for_keys": False,
            "banner_timeout": connect_timeout,
            "auth_timeout": connect_timeout,
        }
        if target.key_path:
            connect_kwargs["key_filename"] = str(Path(target.key_path).expanduser())
        self.connection = Connection(
            host=target.address, port=target.port, user=target.user,
            connect_timeout=int(max(1, connect_timeout)), connect_kwargs=connect_kwargs,
            config=Config(overrides={"load_ssh_configs": False}),
        )
        client = self.connection.client
        known_hosts = Path(target.known_hosts or "~/.ssh/known_hosts").expanduser()
        if known_hosts.exists():
            # Only this server's entries: the client then checks exactly as if it had
            # loaded the whole file, without parsing it once per connection.
            name = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
            for keytype, key in (known_host_keys(known_hosts).lookup(name) or {}).items():
                client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(
            _AcceptNew(str(Path(target.known_hosts or "~/.ssh/known_hosts").expanduser()))
            if target.accept_new_host_keys else _RejectUnknown())

    def connect(self) -> None:
        """Open the connection; raise :class:`SSHError` with a one-line reason."""
        where = f"{self.target.address}:{self.target.port}"
        try:
            self.connection.open()
        except SSHError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise SSHError(
                f"host key mismatch for {where}: server offered {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, known_hosts expects {fingerprint(exc.expected_key)}"
            ) from None
        except paramiko.AuthenticationException:
            raise SSHError(
                f"authentication failed for {self.target.user}@{where} "
                "(the server refused our key)") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            refused = all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values())
            if refused:
                raise SSHError(f"connection refused by {where}") from None
            raise SSHError(f"cannot reach {where}: {_first_line(exc)}") from None
        except socket.gaierror:
            raise SSHError(f"DNS lookup failed for {self.target.address}") from None
        except ConnectionRefusedError:
            raise SSHError(f"connection refused by {where}") from None
        except TimeoutError:
            raise SSHError(
                f"connection to {where} timed out after {self.connect_timeout:g} s") from None
        except FileNotFoundError as exc:
            raise SSHError(f"private key file not found: {exc.filename}") from None
        except paramiko.SSHException as exc:
            raise SSHError(f"SSH negotiation with {where} failed: {_first_line(exc)}") from None
        except OSError as exc:
            raise SSHError(f"cannot reach {where}: {exc.strerror or _first_line(exc)}") from None

    def run(self, command: str, sink: LineSink, *, timeout: float | None = None,
            cancel: threading.Event | None = None,
            tick: Callable[[], float | None] | None = None) -> CommandResult:
        """Run ``command`` remotely, handing each output line to ``sink`` as it arrives.

        Stops the remote process group when ``timeout`` expires or ``cancel`` is set.
        ``tick`` is called at least every 100 ms so the caller can flush buffered output;
        it may return the seconds until it next needs a call, and is then called by then.
        """
        transport = self.connection.transport
        if transport is None or not transport.is_active():
            raise SSHError("connection lost")
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(wrap_command(command))
            channel.shutdown_write()  # the command gets EOF on stdin, never our stdin
        except (paramiko.SSHException, OSError) as exc:
            raise SSHError(f"could not start command: {_first_line(exc)}") from None

        pgid: list[int] = []

        def take_stdout(stream: str, line: str) -> None:
            if not pgid and line.startswith(PGID_MARKER):
                match = re.fullmatch(r"(\d+)", line[len(PGID_MARKER):].strip())
                if match:
                    pgid.append(int(match.group(1)))
                    return
            sink(stream, line)

        # Both output buffers set one event when data arrives: a green-friendly wait on
        # either stream (selecting on the channel's pipe confuses eventlet's hub when
        # the pipe's fd number is reused by the next step's channel).
        data_ready = threading.Event()
        channel.in_buffer.set_event(data_ready)
        channel.in_stderr_buffer.set_event(data_ready)
        stdout = _LineSplitter("stdout", take_stdout)
        stderr = _LineSplitter("stderr", sink)
        deadline = time.monotonic() + timeout if timeout else None
        stopped: str | None = None
        kill_sent_at: float | None = None
        killed_hard = False
        exited_at: float | None = None
        wait = TICK_SECONDS
        try:
            while True:
                data_ready.wait(wait)
                data_ready.clear()
                while channel.recv_ready():
                    stdout.feed(channel.recv(READ_CHUNK))
                while channel.recv_stderr_ready():
                    stderr.feed(channel.recv_stderr(READ_CHUNK))
                wait = TICK_SECONDS
                if tick:
                    due = tick()
                    if due is not None:
                        wait = min(wait, due)
                if channel.exit_status_ready() and not channel.recv_ready() \
                        and not channel.recv_stderr_ready():
                    # sshd may send the exit status before it has drained the command's
                    # stderr: EOF (no more data on either stream) or the close is the
                    # end. A background process holding the output open never sends
                    # EOF, so after the exit wait for it only a moment.
                    if channel.eof_received or channel.closed:
                        break
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > EOF_GRACE:
                        break
                if not transport.is_active() or (channel.closed and
                                                  not channel.exit_status_ready()):
                    stdout.close()
                    stderr.close()
                    return CommandResult(None, stopped, lost=True)
                now = time.monotonic()
                if stopped is None:
                    if cancel is not None and cancel.is_set():
                        stopped = "cancel"
                    elif deadline is not None and now >= deadline:
                        stopped = "timeout"
                    if stopped:
                        self._signal(pgid, "TERM", channel)
                        kill_sent_at = now
                elif not killed_hard and kill_sent_at is not None \
                        and now - kill_sent_at >= self.kill_grace:
                    self._signal(pgid, "KILL", channel)
                    killed_hard = True
                elif killed_hard and kill_sent_at is not None \
                        and now - kill_sent_at >= self.kill_grace * 2:
                    channel.close()  # the remote ignores even KILL: stop waiting for it
                    break
        finally:
            stdout.close()
            stderr.close()
        code = channel.recv_exit_status() if channel.exit_status_ready() else None
        channel.close()
        if code == -1 and stopped is None and self._connection_dropped(transport):
            return CommandResult(None, stopped, lost=True)
        return CommandResult(code, stopped)

    @staticmethod
    def _connection_dropped(transport: paramiko.Transport) -> bool:
        """No exit status means the remote died by a signal or the connection dropped;
        paramiko closes the channel a moment before it marks the transport inactive."""
        deadline = time.monotonic() + 1
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)  # bounded wait for paramiko's reader to notice the EOF
        return not transport.is_active()

    def _signal(self, pgid: list[int], signal_name: str, channel: paramiko.Channel) -> None:
        """Signal the command's process group over a second channel of this connection."""
        if not pgid:
            channel.close()  # not started far enough to have a group: drop it
            return
        try:
            result = self.connection.run(
                f"kill -s {signal_name} -- -{pgid[0]}", in_stream=False, hide=True, warn=True,
                timeout=self.connect_timeout)
        except Exception as exc:  # noqa: BLE001 - best effort: the loop still bounds the wait
            log.warning("%s: sending %s to process group %s failed: %s", self.target.name,
                        signal_name, pgid[0], _first_line(exc))
            channel.close()
            return
        if result.failed:
            log.warning("%s: kill -s %s -- -%s exited %s: %s", self.target.name, signal_name,
                        pgid[0], result.exited, result.stderr.strip()[:300])

    def close(self) -> None:
        self.connection.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
