"""SSH transport: the :class:`~tasks.transport.protocol.HostSession` of a real server.

Everything SSH-specific lives here: host-key checking, timeouts, the remote scripts
that run steps detached (:mod:`tasks.transport.remote_scripts`), and reading their output.

Fabric's :class:`~fabric.Connection` opens and authenticates the connection (one per
server per job; every step reuses it). Output is read from paramiko channels of that
connection directly: Fabric's runner decodes each 1,000-byte chunk on its own (splitting
multi-byte UTF-8) and keeps the whole output in memory, while here lines are cut from
the bytes and decoded whole, and only the current partial line is buffered.

**A step outlives its connection.** Each session runs one agent shell
(:data:`~tasks.transport.remote_scripts.AGENT_SCRIPT`) on one channel for all its steps: the login
shell sshd started for the channel (it leads its own session and process group, so its
PID is the steps' PGID), which runs each step detached from the channel, its output
through two long-lived ``tee -p`` into files of the host's run directory, and ends it
with a marker line carrying its exit status (:class:`~tasks.transport.step_output.StepStream`
cuts the streams there). A later session re-attaches with ``ATTACH_SCRIPT`` (``tail``
from byte offsets) and reads the state with ``STATUS_SCRIPT``. Stopping a step is
``kill -s TERM -- -PGID`` (a form dash's builtin accepts) over a second channel, PGID
read from the run directory; it ends the agent too, and the next step starts another.

The remote needs a POSIX login shell (bash, dash, ksh, zsh) and GNU coreutils
(``tee -p``, ``tail --pid``).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from tasks.meters import SSH_CONNECT_SECONDS, SSH_FAILURES
from tasks.transport.protocol import (
    OutputSink,
    RemoteStatus,
    StepControl,
    StepLocation,
    StepResult,
    Target,
    TransportError,
)
from tasks.transport.remote_scripts import (
    AGENT_MARKER,
    AGENT_SCRIPT,
    ATTACH_MARKER,
    ATTACH_SCRIPT,
    CLEAN_SCRIPT,
    ERROR_MARKER,
    NO_RUN_DIR,
    REMOVE_REQUEST,
    REMOVE_SCRIPT,
    SIGNAL_SCRIPT,
    STATUS_SCRIPT,
    remote_script,
    step_request,
)
from tasks.transport.step_output import LineSplitter, StepStream

log = logging.getLogger(__name__)

# paramiko checks every packet's MAC with util.constant_time_bytes_eq, a Python loop
# over its 32 bytes; hmac.compare_digest is the same constant-time comparison in C.
# packet.py looks the function up on the module at each call, so this reaches it.
paramiko.util.constant_time_bytes_eq = hmac.compare_digest

READ_CHUNK = 65_536
# A step channel's window (PATCHBAY_SSH_WINDOW): how much output a server may send
# before the console has read it. paramiko's default, 2 MiB in packets of 32 KiB, let
# each server of a chatty job park megabytes here (in the channel and in the copies of
# every packet paramiko makes while decrypting it) while the event writer caught up:
# 100 servers printing 20,000 lines each grew the console by 150 MB. With a 32 KiB
# window in 8 KiB packets it grew by about 42 MB, and took the lines faster (smaller
# copies): a reader that lags holds back the remote command (its tee) instead.
MIN_WINDOW = 16_384
MAX_PACKET = 32_768  # paramiko's own largest
MIN_PACKET = 4_096
CHUNKS_PER_ROUND = 16
TICK_SECONDS = 0.1
EOF_GRACE = 2.0  # seconds to wait for end of output after the exit status

SSHError = TransportError  # the name callers used before the Transport protocol

# The retention sweep (CLEAN_SCRIPT) runs on a server (address, port, user, run root)
# at most once per SWEEP_INTERVAL seconds in each console process: leftovers are days
# old before they are due, so sweeping at every finished host bought nothing but CPU
# on the server (a `find` over the run root for every host of every job).
SWEEP_INTERVAL = 3600.0
_last_sweep: dict[tuple[str, int, str, str], float] = {}


class ConnectionClosed(TransportError):
    """The connection was closed while it was being opened (a retry may well work)."""


class PrivateKeyError(TransportError):
    """A server's private key file cannot be used (missing, unreadable, encrypted)."""


_FileVersion = tuple[int, int, int]  # inode, mtime (ns), size
_private_keys: dict[Path, tuple[_FileVersion, paramiko.PKey]] = {}


def _per_file_version(cache: dict[Path, tuple[_FileVersion, Any]], path: Path,
                      load: Callable[[Path], Any]) -> Any:
    """``load(path)``, kept in ``cache`` until the file changes (``path.stat()`` may
    raise ``OSError``)."""
    stat = path.stat()
    version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = cache.get(path)
    if cached is None or cached[0] != version:
        cached = (version, load(path))
        cache[path] = cached
    return cached[1]


def load_private_key(path: Path) -> paramiko.PKey:
    """The private key in ``path`` (with its ``-cert.pub`` certificate, if there is one),
    read again only when the file changes: a fleet shares a few keys, and parsing one
    per connection was a measurable part of a 1,000-server fan-out.

    A failure names the file, not its folder: the reason is shown on job pages and in
    events, and the full path would tell every viewer where the console keeps keys."""
    try:
        return _per_file_version(_private_keys, path, _read_private_key)
    except OSError:
        return _read_private_key(path)  # names the failure


def _read_private_key(path: Path) -> paramiko.PKey:
    name = path.name
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise PrivateKeyError(f"private key file {name} not found") from None
    except OSError as exc:
        raise PrivateKeyError(f"private key file {name} cannot be read: "
                              f"{exc.strerror or type(exc).__name__}") from None
    except TypeError:  # what the cryptography package raises for a missing password
        raise PrivateKeyError(f"private key file {name} is protected by a passphrase, "
                              "which Patchbay cannot enter") from None
    except (ValueError, paramiko.SSHException, paramiko.UnknownKeyType):
        raise PrivateKeyError(f"private key file {name} holds no private key Patchbay "
                              "can use") from None


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
        if self.path:
            record_host_key(Path(self.path), hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def record_host_key(path: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname``'s ``key`` to the known_hosts file at ``path``.

    Other connections (threads, greenlets, console nodes sharing the file) may meet
    new hosts at the same moment, so the file is read again and appended to under an
    exclusive lock on the file itself: a key another writer recorded meanwhile is not
    written twice, and a *different* key recorded meanwhile for this host is a changed
    key, refused as if it had been in the file when the connection started."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="ascii") as handle:  # closing it releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        recorded = known_host_keys(path).lookup(hostname)
        if recorded:
            expected = recorded.get(key.get_name())
            if expected == key:
                return
            raise paramiko.BadHostKeyException(
                hostname, key, expected or next(iter(recorded.values())))
        separator = "\n" if text and not text.endswith("\n") else ""
        handle.write(f"{separator}{hostname} {key.get_name()} {key.get_base64()}\n")


class KnownHosts:
    """A parsed known_hosts file, looked up by host name in constant time.

    paramiko's ``HostKeys.lookup`` compares the name with every entry, hashing it once
    per hashed entry: with a 1,000-server file that is a million comparisons per
    fan-out. Plain names are indexed once; hashed entries (``|1|salt|hash``, whose name
    can only be found by hashing) are scanned once per name, and every answer is kept
    while the file stays the same."""

    def __init__(self, path: Path) -> None:
        self.host_keys = paramiko.HostKeys(str(path))
        self._plain: dict[str, list[paramiko.hostkeys.HostKeyEntry]] = {}
        self._hashed: list[paramiko.hostkeys.HostKeyEntry] = []
        self._answers: dict[str, dict[str, paramiko.PKey]] = {}
        for entry in self.host_keys._entries:  # noqa: SLF001 - no public way to iterate
            if entry.key is None:
                continue
            for name in entry.hostnames:
                if name.startswith("|1|"):
                    self._hashed.append(entry)
                else:
                    self._plain.setdefault(name, []).append(entry)

    def lookup(self, hostname: str) -> dict[str, paramiko.PKey]:
        """``{key type: key}`` recorded for ``hostname`` (empty when none is)."""
        answer = self._answers.get(hostname)
        if answer is None:
            entries = self._plain.get(hostname, []) + [
                entry for entry in self._hashed
                if self.host_keys._hostname_matches(hostname, entry)]  # noqa: SLF001
            answer = {}
            for entry in entries:
                answer.setdefault(entry.key.get_name(), entry.key)
            self._answers[hostname] = answer
        return answer


_known_hosts_files: dict[Path, tuple[_FileVersion, KnownHosts]] = {}


def known_host_keys(path: Path) -> KnownHosts:
    """The parsed known_hosts file at ``path``, parsed again only when it changes.

    paramiko's parser is quadratic (about 0.2 ms per line at 1,000 lines): parsing a
    fleet's file once per connection cost more CPU than everything else a server needs.
    """
    return _per_file_version(_known_hosts_files, path, KnownHosts)


_shared_config: list[Config] = []


def _fabric_config() -> Config:
    """One Fabric configuration for every connection (no ssh_config files: the
    inventory says how to reach each server). Connections only read it, and building
    one per connection cost a fan-out more CPU than its host-key checks."""
    if not _shared_config:
        _shared_config.append(Config(overrides={"load_ssh_configs": False}))
    return _shared_config[0]


class _Connection(Connection):
    """Fabric's Connection that never writes to its configuration, which every
    connection shares (:func:`_fabric_config`).

    invoke's ``DataProxy`` turns a set of any name its class does not define into a
    config update, and each update re-merges the whole config (it is empty for a
    moment: a connection built in another thread then read no ``timeouts`` or
    ``authentication`` and failed with AttributeError). Fabric sets
    ``inline_ssh_env`` that way. Here every attribute set is the instance's own;
    it is also cheaper, as DataProxy runs ``dir(self)`` on every set."""

    def __setattr__(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)


class _Agent:
    """A session's agent shell (``AGENT_SCRIPT``) on its channel: how many bytes of
    each stream it has sent since its first line (where the next step's output begins
    in its files, less what came after the last end marker, kept in ``rest``)."""

    def __init__(self, channel: paramiko.Channel, host_dir: str, rest: bytes) -> None:
        self.channel = channel
        self.host_dir = host_dir
        self.received = [len(rest), 0]
        self.rest = [rest, b""]

    def alive(self) -> bool:
        channel = self.channel
        return not channel.closed and not channel.exit_status_ready() \
            and not channel.eof_received and channel.get_transport().is_active()

    def counted(self, stream: int, feed: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def counted_feed(data: bytes) -> None:
            self.received[stream] += len(data)
            feed(data)
        return counted_feed


class _AttachHead:
    """Takes ATTACH_SCRIPT's first line (the step's end-marker token) off its stdout
    and gives the token to both streams."""

    def __init__(self, stdout: StepStream, stderr: StepStream) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.head: bytes | None = b""

    def feed(self, data: bytes) -> None:
        if self.head is None:
            self.stdout.feed(data)
            return
        self.head += data
        line, newline, rest = self.head.partition(b"\n")
        if not newline:
            return
        self.head = None
        token = line.removeprefix(ATTACH_MARKER).decode("ascii", "replace").strip()
        if not line.startswith(ATTACH_MARKER) or not token.isalnum():
            raise SSHError(f"unexpected answer from the step's run directory: {line!r:.100}")
        self.stdout.set_token(token)
        self.stderr.set_token(token)
        self.stdout.feed(rest)


class SSHHostSession:
    """One authenticated connection to one server, reused for all of a job's steps."""

    def __init__(self, target: Target, connect_timeout: float = 10,
                 kill_grace: float = 5, window: int = 32_768) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.kill_grace = kill_grace
        self.window = max(MIN_WINDOW, window)
        self.packet_size = min(MAX_PACKET, max(MIN_PACKET, self.window // 4))
        connect_kwargs: dict[str, object] = {
            "allow_agent": target.key_path is None,
            "look_for_keys": False,
            "banner_timeout": connect_timeout,
            "auth_timeout": connect_timeout,
        }
        self.key_file = Path(target.key_path).expanduser() if target.key_path else None
        self._agent: _Agent | None = None
        self.connection = _Connection(
            host=target.address, port=target.port, user=target.user,
            connect_timeout=int(max(1, connect_timeout)), connect_kwargs=connect_kwargs,
            config=_fabric_config(),
        )
        client = self.connection.client
        known_hosts = Path(target.known_hosts or "~/.ssh/known_hosts").expanduser()
        if known_hosts.exists():
            # Only this server's entries: the client then checks exactly as if it had
            # loaded the whole file, without parsing it once per connection.
            name = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
            for keytype, key in known_host_keys(known_hosts).lookup(name).items():
                client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(
            _AcceptNew(str(known_hosts)) if target.accept_new_host_keys else _RejectUnknown())

    def connect(self) -> None:
        """Open the connection; raise :class:`SSHError` with a one-line reason. The time
        it took, or the kind of failure, goes to this process's metrics."""
        started = time.monotonic()
        try:
            self._open_connection()
        except SSHError as exc:
            SSH_FAILURES.labels(connect_failure_kind(exc)).inc()
            raise
        SSH_CONNECT_SECONDS.observe(time.monotonic() - started)

    def _open_connection(self) -> None:
        where = f"{self.target.address}:{self.target.port}"
        if self.key_file is not None and "pkey" not in self.connection.connect_kwargs:
            self.connection.connect_kwargs["pkey"] = load_private_key(self.key_file)
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
            if not self._transport_active():  # paramiko says so of a cut connection too
                raise ConnectionClosed(f"connection to {where} closed during "
                                       "authentication") from None
            raise SSHError(
                f"authentication failed for {self.target.user}@{where} "
                "(the server refused our key)") from None
        except EOFError:
            # paramiko re-raises its reader's EOFError when the server (or something on
            # the way) closes the connection during the handshake.
            raise ConnectionClosed(f"connection to {where} closed during the SSH "
                                   "handshake") from None
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
        except paramiko.SSHException as exc:
            raise SSHError(f"SSH negotiation with {where} failed: {_first_line(exc)}") from None
        except OSError as exc:
            raise SSHError(f"cannot reach {where}: {exc.strerror or _first_line(exc)}") from None

    def _transport_active(self) -> bool:
        client = getattr(self.connection, "client", None)
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    # -- steps ------------------------------------------------------------------------

    def start_step(self, where: StepLocation, command: str, sink: OutputSink,
                   control: StepControl, secret_values: Sequence[str] = ()) -> StepResult:
        agent = self._agent_for(where.host_dir)
        if isinstance(agent, StepResult):
            return agent  # the agent could not start: the run directory
        token = secrets.token_hex(8)
        start = (agent.received[0] - len(agent.rest[0]),
                 agent.received[1] - len(agent.rest[1]))
        try:
            agent.channel.sendall(step_request(where.key, token, start, command))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._agent = None
            raise SSHError(f"could not start the step: {_first_line(exc)}") from None
        stdout = StepStream(LineSplitter("stdout", sink, secret_values=secret_values), token)
        stderr = StepStream(LineSplitter("stderr", sink, secret_values=secret_values), token)
        rest, agent.rest = agent.rest, [b"", b""]
        stdout.feed(rest[0])
        stderr.feed(rest[1])
        result = self._follow(agent.channel, agent.counted(0, stdout.feed),
                              agent.counted(1, stderr.feed), stdout, stderr, where, control,
                              keep_channel=True)
        if stdout.ended and stderr.ended:
            agent.rest = [stdout.rest, stderr.rest]
        else:
            self._agent = None  # it died with the step (stopped), or the connection did
        return result

    def attach_step(self, where: StepLocation, offsets: dict[str, int], sink: OutputSink,
                    control: StepControl, secret_values: Sequence[str] = ()) -> StepResult:
        out, err = offsets.get("stdout", 0), offsets.get("stderr", 0)
        channel = self._open(remote_script(ATTACH_SCRIPT, where.host_dir, where.key,
                                           str(out), str(err)))
        stdout = StepStream(LineSplitter("stdout", sink, out, secret_values))
        stderr = StepStream(LineSplitter("stderr", sink, err, secret_values))
        head = _AttachHead(stdout, stderr)
        result = self._follow(channel, head.feed, stderr.feed, stdout, stderr, where,
                              control, keep_channel=False)
        if result.lost or (stdout.ended and stderr.ended):
            return result
        status = self.step_status(where)
        result.exit_code = status.exit_code
        if status.state == "vanished":
            result.reason = ("the step's processes are gone and left no exit status "
                             "(killed, or the server restarted)")
        return result

    def step_status(self, where: StepLocation) -> RemoteStatus:
        words = self._short(remote_script(STATUS_SCRIPT, where.host_dir, where.key)).split()
        if len(words) != 3 or words[0] not in ("missing", "running", "exited", "vanished"):
            raise SSHError(f"unexpected answer from the step status check: {words!r:.100}")
        state, pgid, code = words
        return RemoteStatus(state, int(pgid) if pgid.isdigit() else None,
                            int(code) if code.lstrip("-").isdigit() else None)

    def signal(self, where: StepLocation, signal_name: str) -> bool:
        try:
            exit_code, _ = self._control(remote_script(SIGNAL_SCRIPT, signal_name,
                                                       where.host_dir, where.key))
        except SSHError as exc:  # best effort: the caller bounds the wait
            log.warning("%s: sending %s to step %s in %s failed: %s", self.target.name,
                        signal_name, where.key, where.host_dir, exc)
            return False
        return exit_code == 0

    def clean(self, host_dir: str, root: str, retention_seconds: float) -> None:
        """Remove the host's run directory; and, if this server's run root was not
        swept in the last :data:`SWEEP_INTERVAL`, every job directory there older than
        ``retention_seconds``. Between sweeps the host's agent removes it (one ``rm``
        run in place of the agent), or, when no agent is left, a command of its own."""
        target = self.target
        server = (target.address, target.port, target.user, root)
        swept = _last_sweep.get(server)
        sweep = swept is None or time.monotonic() - swept >= SWEEP_INTERVAL
        agent, self._agent = self._agent, None
        try:
            if sweep:
                minutes = str(max(1, int(retention_seconds // 60)))
                self._short(remote_script(CLEAN_SCRIPT, host_dir, root, minutes))
                _last_sweep[server] = time.monotonic()
            elif agent is not None and agent.host_dir == host_dir and agent.alive():
                self._remove_by(agent)
            else:
                self._short(remote_script(REMOVE_SCRIPT, host_dir))
        except SSHError as exc:
            log.warning("%s: removing %s failed: %s", target.name, host_dir, exc)

    def close(self) -> None:
        """Close the connection: an agent reads end of input and ends after its step."""
        self._agent = None
        self.connection.close()

    # -- the agent ----------------------------------------------------------------------

    def _agent_for(self, host_dir: str) -> _Agent | StepResult:
        """The session's agent for ``host_dir``, started if there is none (or it died).
        A :class:`StepResult` (exit code 125) when it could not make the directory."""
        agent = self._agent
        if agent is not None and agent.host_dir == host_dir and agent.alive():
            return agent
        self._agent = None
        channel = self._open(remote_script(AGENT_SCRIPT, host_dir, secrets.token_hex(4)),
                             stdin=True)
        first, rest = self._first_line(channel)
        if first.startswith(AGENT_MARKER) and first[len(AGENT_MARKER):].strip().isdigit():
            self._agent = _Agent(channel, host_dir, rest)
            return self._agent
        channel.close()
        reason = f"could not create the run directory {host_dir} on the server"
        if first.startswith(ERROR_MARKER):
            detail = first[len(ERROR_MARKER):].decode("utf-8", "replace").strip()
            return StepResult(NO_RUN_DIR, reason=f"{reason}: {detail[:300]}")
        code = channel.exit_status if channel.exit_status_ready() else None
        if code == NO_RUN_DIR:
            return StepResult(NO_RUN_DIR, reason=reason)
        raise SSHError(f"the step runner did not start on the server (exit status {code})")

    def _first_line(self, channel: paramiko.Channel) -> tuple[bytes, bytes]:
        """The first line the channel's stdout sends (without its newline), and what
        came after it; ``b""`` when the channel ends first."""
        data = b""
        deadline = time.monotonic() + self.connect_timeout
        try:
            channel.settimeout(self.connect_timeout)
            while b"\n" not in data:
                chunk = channel.recv(READ_CHUNK)
                if not chunk:
                    channel.status_event.wait(max(0.0, deadline - time.monotonic()))
                    return data, b""
                data += chunk
                if time.monotonic() > deadline:
                    raise TimeoutError
        except TimeoutError:
            channel.close()
            raise SSHError(f"the step runner did not answer within "
                           f"{self.connect_timeout:g} s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise SSHError(f"the step runner failed: {_first_line(exc)}") from None
        finally:
            channel.settimeout(None)
        first, _, rest = data.partition(b"\n")
        return first, rest

    def _remove_by(self, agent: _Agent) -> None:
        """Have the agent remove its run directory; wait for it within the timeout."""
        try:
            agent.channel.sendall(REMOVE_REQUEST)
            agent.channel.shutdown_write()
            if not agent.channel.status_event.wait(self.connect_timeout):
                raise SSHError(f"removing the run directory took over "
                               f"{self.connect_timeout:g} s")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"removing the run directory failed: {_first_line(exc)}"
                           ) from None
        finally:
            agent.channel.close()

    # -- plumbing ---------------------------------------------------------------------

    def _open(self, command: str, stdin: bool = False) -> paramiko.Channel:
        """A channel running ``command``; its stdin closed unless ``stdin``."""
        transport = self.connection.transport
        if transport is None or not transport.is_active():
            SSH_FAILURES.labels("dropped").inc()
            raise SSHError("connection lost")
        try:
            channel = transport.open_session(window_size=self.window,
                                             max_packet_size=self.packet_size,
                                             timeout=self.connect_timeout)
            channel.exec_command(command)
            if not stdin:
                channel.shutdown_write()  # the command gets EOF on stdin, never ours
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"could not start command: {_first_line(exc)}") from None
        return channel

    def _short(self, command: str) -> str:
        """Run a short control command; its stdout. Raises :class:`SSHError` when the
        connection is gone."""
        return self._control(command)[1]

    def _control(self, command: str) -> tuple[int | None, str]:
        """Run a short control command on a channel of its own: its exit status (None
        if it sent none) and stdout, within ``connect_timeout``. Read here rather than
        by Fabric's ``run``, whose runner starts three green threads per command (the
        clean-up after every server's last step was a tenth of a fan-out's CPU)."""
        channel = self._open(command)
        deadline = time.monotonic() + self.connect_timeout
        out = bytearray()
        try:
            channel.settimeout(self.connect_timeout)
            while True:
                chunk = channel.recv(READ_CHUNK)
                if not chunk:
                    break
                out += chunk
                if time.monotonic() > deadline:
                    raise TimeoutError
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
        except TimeoutError:
            raise SSHError(f"control command timed out after {self.connect_timeout:g} s"
                           ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"control command failed: {_first_line(exc)}") from None
        finally:
            channel.close()
        exit_code = channel.exit_status if channel.exit_status_ready() else None
        return (None if exit_code == -1 else exit_code), out.decode("utf-8", "replace")

    def _follow(self, channel: paramiko.Channel, feed_stdout: Callable[[bytes], None],
                feed_stderr: Callable[[bytes], None], stdout: StepStream,
                stderr: StepStream, where: StepLocation, control: StepControl, *,
                keep_channel: bool) -> StepResult:
        """Read a step's output until both streams have its end marker, the channel
        ends, the connection breaks, or ``control`` stops it (TERM, then KILL after the
        grace period, then give up waiting). An agent's channel (``keep_channel``) stays
        open for its next step."""
        transport = channel.get_transport()
        # Both output buffers set one event when data arrives: a green-friendly wait on
        # either stream (selecting on the channel's pipe confuses eventlet's hub when
        # the pipe's fd number is reused by the next step's channel).
        data_ready = threading.Event()
        channel.in_buffer.set_event(data_ready)
        channel.in_stderr_buffer.set_event(data_ready)
        stopped: str | None = None
        sent: str | None = None  # the last signal that reached the step
        kill_sent_at: float | None = None
        killed_hard = False
        exited_at: float | None = None
        wait = TICK_SECONDS

        def offsets() -> dict[str, int]:
            return {"stdout": stdout.offset, "stderr": stderr.offset}

        while True:
            data_ready.wait(wait)
            data_ready.clear()
            # A bounded read per round: a command printing without pause must still
            # let the stop checks below run.
            for _ in range(CHUNKS_PER_ROUND):
                if not channel.recv_ready():
                    break
                feed_stdout(channel.recv(READ_CHUNK))
            for _ in range(CHUNKS_PER_ROUND):
                if not channel.recv_stderr_ready():
                    break
                feed_stderr(channel.recv_stderr(READ_CHUNK))
            if stdout.ended and stderr.ended:
                break
            wait = 0 if channel.recv_ready() or channel.recv_stderr_ready() else TICK_SECONDS
            due = control.tick()
            if due is not None:
                wait = min(wait, due)
            if channel.exit_status_ready() and not channel.recv_ready() \
                    and not channel.recv_stderr_ready():
                # sshd may send the exit status before it has drained the command's
                # stderr: EOF (no more data on either stream) or the close is the end.
                # A background process holding the output open never sends EOF, so
                # after the exit wait for it only a moment.
                if channel.eof_received or channel.closed:
                    break
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > EOF_GRACE:
                    break
            if not transport.is_active() or (channel.closed and
                                              not channel.exit_status_ready()):
                SSH_FAILURES.labels("dropped").inc()
                return StepResult(None, stopped, lost=True, offsets=offsets(), signal=sent)
            now = time.monotonic()
            if stopped is None:
                stopped = control.stop_reason()
                if stopped:
                    sent = "TERM" if self._stop(where, "TERM", channel) else sent
                    kill_sent_at = now
            elif not killed_hard and kill_sent_at is not None \
                    and now - kill_sent_at >= self.kill_grace:
                sent = "KILL" if self._stop(where, "KILL", channel) else sent
                killed_hard = True
            elif killed_hard and kill_sent_at is not None \
                    and now - kill_sent_at >= self.kill_grace * 2:
                channel.close()  # the remote ignores even KILL: stop waiting for it
                break
        if stdout.ended and stderr.ended:
            if not keep_channel:
                channel.close()
            if stopped is not None and not killed_hard:
                sent = self._kill_survivors(where, kill_sent_at, sent)
            return StepResult(stdout.exit_code, stopped, offsets=offsets(), signal=sent)
        stdout.close()
        stderr.close()
        code = channel.recv_exit_status() if channel.exit_status_ready() else None
        channel.close()
        if stopped is not None and not killed_hard:
            sent = self._kill_survivors(where, kill_sent_at, sent)
        if code == -1 and stopped is None and self._connection_dropped(transport):
            SSH_FAILURES.labels("dropped").inc()
            return StepResult(None, stopped, lost=True, offsets=offsets())
        return StepResult(code, stopped, offsets=offsets(), signal=sent)

    def _kill_survivors(self, where: StepLocation, term_sent_at: float | None,
                        sent: str | None) -> str | None:
        """After TERM the channel ends as soon as the wrapper's own processes die, but
        a command that ignores TERM runs on in the step's process group: it gets KILL
        once the grace period is over. Returns the last signal sent."""
        deadline = (term_sent_at or time.monotonic()) + self.kill_grace
        while True:
            try:
                alive = self.step_status(where).state == "running"
            except SSHError:
                return sent  # the connection is gone: nothing more can be done here
            if not alive:
                return sent
            if time.monotonic() >= deadline:
                return "KILL" if self._stop(where, "KILL", None) else sent
            time.sleep(TICK_SECONDS * 2)  # polling the group until the grace period ends

    def _stop(self, where: StepLocation, signal_name: str,
              channel: paramiko.Channel | None) -> bool:
        """Send ``signal_name`` to the step's process group; whether it was sent."""
        if self.signal(where, signal_name):
            return True
        log.warning("%s: could not send %s to the step in %s", self.target.name,
                    signal_name, where.path)
        return False

    @staticmethod
    def _connection_dropped(transport: paramiko.Transport) -> bool:
        """No exit status means the remote died by a signal or the connection dropped;
        paramiko closes the channel a moment before it marks the transport inactive."""
        deadline = time.monotonic() + 1
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)  # bounded wait for paramiko's reader to notice the EOF
        return not transport.is_active()


# The kind of a failed connect (tasks.meters.SSH_FAILURE_REASONS), by the exception
# that SSHHostSession.connect turned into its SSHError; the first match wins.
_CONNECT_FAILURE_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (paramiko.BadHostKeyException, "host_key"),
    (paramiko.AuthenticationException, "auth"),
    (socket.gaierror, "dns"),
    (ConnectionRefusedError, "refused"),
    (TimeoutError, "timeout"),
    (paramiko.SSHException, "protocol"),
    (OSError, "unreachable"),
)


def connect_failure_kind(exc: SSHError) -> str:
    """Why a connect failed, as one word for the metrics."""
    if isinstance(exc, PrivateKeyError):
        return "auth"
    if isinstance(exc, ConnectionClosed):
        return "dropped"
    cause = exc.__context__  # what `raise SSHError(...) from None` was handling
    if cause is None:
        return "host_key"  # raised by our own host key policy (_RejectUnknown)
    if isinstance(cause, paramiko.ssh_exception.NoValidConnectionsError):
        refused = all(isinstance(e, ConnectionRefusedError) for e in cause.errors.values())
        return "refused" if refused else "unreachable"
    return next((kind for kind_of, kind in _CONNECT_FAILURE_KINDS
                 if isinstance(cause, kind_of)), "other")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
