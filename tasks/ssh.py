"""SSH transport: the :class:`~tasks.transport.HostSession` of a real server.

Everything SSH-specific lives here: host-key checking, timeouts, the remote scripts
that run a step detached in its run directory, and incremental output decoding.

Fabric's :class:`~fabric.Connection` opens and authenticates the connection (one per
server per job; every step reuses it). Output is read from paramiko channels of that
connection directly: Fabric's runner decodes each 1,000-byte chunk on its own (splitting
multi-byte UTF-8) and keeps the whole output in memory, while here lines are cut from
the bytes and decoded whole, and only the current partial line is buffered.

**A step outlives its connection.** :data:`START_SCRIPT` runs the command in a subshell
of the login shell sshd started for the channel (as ``ssh host command`` would; that
shell already leads its own session and process group, so ``$$`` is the PGID and no
extra ``setsid`` process is needed), with stdin from ``/dev/null`` and
each stream piped through ``tee -p`` into ``out``/``err`` in the step's run directory
and on to the channel. When the connection breaks, ``tee -p`` ignores the broken pipe
and keeps writing the file, and the command never notices. The step's exit status goes
to ``status`` once both files are complete, in one write of one line (readers accept
only a whole line: what a rename would give, without an ``mv`` process per step). A
later session re-attaches
with :data:`ATTACH_SCRIPT` (``tail`` from byte offsets, following until the PGID's
leader exits) and reads the status with :data:`STATUS_SCRIPT`. Stopping a step is
``kill -s TERM -- -PGID`` (a form dash's builtin accepts) over a second channel, PGID
read from the run directory. Those short commands go through Fabric's ``run`` with
``in_stream=False`` (otherwise it reads our stdin, which eventlet refuses to share).

The remote needs a POSIX login shell (bash, dash, ksh, zsh) and GNU coreutils
(``tee -p``, ``tail --pid``).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from tasks.metrics import SSH_CONNECT_SECONDS, SSH_FAILURES
from tasks.transport import (
    OutputSink,
    RemoteStatus,
    StepControl,
    StepLocation,
    StepResult,
    Target,
    TransportError,
)

log = logging.getLogger(__name__)

# paramiko checks every packet's MAC with util.constant_time_bytes_eq, a Python loop
# over its 32 bytes; hmac.compare_digest is the same constant-time comparison in C.
# packet.py looks the function up on the module at each call, so this reaches it.
paramiko.util.constant_time_bytes_eq = hmac.compare_digest

PGID_MARKER = b"@@patchbay-pgid "
ERROR_MARKER = b"@@patchbay-error "  # the wrapper's own failure, for the reason
MAX_LINE_BYTES = 16_384  # longer lines are cut into pieces rather than buffered whole
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
NO_RUN_DIR = 125  # START_SCRIPT's exit status when it cannot make the run directory

SSHError = TransportError  # the name callers used before the Transport protocol

# $1: the command; $2: its run directory; $3...: run directories to create as well.
# The command runs by `eval` in a subshell, in the shell's own working directory: its
# `exit N` ends only that subshell, a syntax error in it is its own failure, and it
# sees no variable or parameter of this script. The wrapper's own messages never reach
# the step's output: a failure to make the run directory comes first, behind
# ERROR_MARKER (it becomes the step's reason), and tee's complaints are dropped.
#
# Each fork of the login shell costs the server about 1 ms of CPU (bash), so the
# script spares what it can. `mkdir` runs plainly, and only when it fails again is its
# message captured (a command substitution is one more fork). Under bash the command
# runs in the subshell that is the pipeline's own element, and its exit status comes
# from PIPESTATUS (even when the command `exec`s); a POSIX shell has no PIPESTATUS, so
# there a further subshell runs the command and reports its status itself.
START_SCRIPT = r"""
__pb_c=$1; shift; __pb_d=$1
[ -d "$__pb_d" ] || mkdir -p -- "$@" 2>/dev/null || __pb_e=$(mkdir -p -- "$@" 2>&1) || {
  printf '@@patchbay-error %s\n' "$(printf %s "$__pb_e" | tr '\n' ' ')"; exit 125; }
{ echo $$ > "$__pb_d/pgid"; } 2>/dev/null
printf '@@patchbay-pgid %s\n' $$
if [ -n "${BASH_VERSION-}" ]; then
  { { set -- "$__pb_c"; unset __pb_c __pb_d __pb_e; eval "shift; $1"; } </dev/null 4>&- \
      2>&1 >&3 3>&- | tee -p "$__pb_d/err" >&2 2>/dev/null 3>&- 4>&-
    echo "${PIPESTATUS[0]}" >&4; } 4>"$__pb_d/exit" 3>&1 | tee -p "$__pb_d/out" 2>/dev/null
else
  { { ( set -- "$__pb_c"; unset __pb_c __pb_d __pb_e; eval "shift; $1" ) </dev/null 4>&-
      echo $? >&4; } 2>&1 >&3 3>&- | tee -p "$__pb_d/err" >&2 2>/dev/null 3>&- 4>&-
    } 4>"$__pb_d/exit" 3>&1 | tee -p "$__pb_d/out" 2>/dev/null
fi
__pb_c=; { read __pb_c < "$__pb_d/exit"; echo "${__pb_c:=125}" > "$__pb_d/status"; } 2>/dev/null
exit "${__pb_c:-125}"
"""

# $1: run directory; $2, $3: first byte of stdout / stderr to send (1-based). tail's
# own complaints are dropped: only the step's bytes are its output.
ATTACH_SCRIPT = r"""
cd "$1" 2>/dev/null && read p < pgid 2>/dev/null || exit 0
if [ -f status ]; then
  tail -c +"$2" out 2>/dev/null; tail -c +"$3" err >&2 2>/dev/null; exit 0; fi
tail -c +"$2" -s 0.1 -f --pid="$p" out 2>/dev/null &
tail -c +"$3" -s 0.1 -f --pid="$p" err >&2 2>/dev/null
wait
"""

# $1: run directory. Prints "STATE PGID EXIT": the status is read again after the
# group is found gone, since the step may have ended between the two looks.
STATUS_SCRIPT = r"""
cd "$1" 2>/dev/null && read p < pgid 2>/dev/null || { echo missing - -; exit 0; }
if read c < status 2>/dev/null; then echo exited "$p" "$c"
elif kill -s 0 -- -"$p" 2>/dev/null; then echo running "$p" -
elif read c < status 2>/dev/null; then echo exited "$p" "$c"
else echo vanished "$p" -; fi
"""

# $1: signal name; $2: run directory.
SIGNAL_SCRIPT = r"""
read p < "$2/pgid" 2>/dev/null || exit 3
[ -f "$2/status" ] && exit 0
kill -s "$1" -- -"$p"
"""

# $1: host run directory; $2: run root; $3: minutes a job directory is kept. One find
# (and the rm it starts) removes both: the host's directory, and every job directory
# directly under the root that is older than that (`-path "$2/*/*"` is any deeper one).
# Other hosts of the same account may be removing theirs at the same moment: what
# vanished under find is no error.
CLEAN_SCRIPT = r"""
[ -d "$2" ] || exit 0
find "$2" -mindepth 1 -maxdepth 2 \( -path "$1" -o ! -path "$2/*/*" -mmin +"$3" \) \
  -prune -exec rm -rf -- {} + 2>/dev/null
exit 0
"""

# $1: host run directory. Between two sweeps a finished host's directory is removed by
# this alone: the login shell runs a command line's last command in place (bash and dash
# do), so it costs the server one program and no fork, where CLEAN_SCRIPT's `find`
# costs two programs and a fork and reads the whole run root. (No redirection: with one,
# bash forks first. rm's complaints go to the channel's stderr, which nobody reads.)
REMOVE_SCRIPT = 'rm -rf -- "$1"'

# The retention sweep (CLEAN_SCRIPT) runs on a server (address, port, user, run root)
# at most once per SWEEP_INTERVAL seconds in each console process: leftovers are days
# old before they are due, so sweeping at every finished host bought nothing but CPU
# on the server (a `find` over the run root for every host of every job).
SWEEP_INTERVAL = 3600.0
_last_sweep: dict[tuple[str, int, str, str], float] = {}


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


def remote_script(script: str, *args: str) -> str:
    """A command line that runs ``script`` in the login shell sshd starts, with ``args``
    as its positional parameters (quoted, never spliced into the script). A path
    starting ``~/`` becomes ``"$HOME"/...`` so the remote expands it.

    The script runs in that shell itself, not in a further ``sh -c``: every process
    spared is one fewer fork and exec per step on the server."""
    return " ".join(["set --", *(_remote_path(arg) for arg in args)]) + "\n" + script


def _remote_path(value: str) -> str:
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)


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


class LineSplitter:
    """Cuts one stream's bytes into lines, each handed on with the byte offset just
    after it, so a reader that stops can go on at exactly the next unread byte.

    Lines are cut from bytes and decoded whole (a newline never falls inside a UTF-8
    sequence); only the partial last line is buffered, and a line longer than
    :data:`MAX_LINE_BYTES` is cut at a character boundary."""

    def __init__(self, stream: str, sink: OutputSink, offset: int = 0) -> None:
        self.stream = stream
        self.sink = sink
        self.offset = offset  # end of the last line handed on
        self.pending = b""

    def feed(self, data: bytes) -> None:
        if not data:
            return
        parts = (self.pending + data).split(b"\n")
        self.pending = parts.pop()
        for part in parts:
            self._emit_cut(part, 1)
        while len(self.pending) > MAX_LINE_BYTES:
            cut = _char_boundary(self.pending, MAX_LINE_BYTES)
            self._emit(self.pending[:cut], 0)
            self.pending = self.pending[cut:]

    def close(self) -> None:
        """Hand on the partial last line, if any (the stream has ended)."""
        if self.pending:
            rest, self.pending = self.pending, b""
            self._emit_cut(rest, 0)

    def _emit_cut(self, line: bytes, newline: int) -> None:
        while len(line) > MAX_LINE_BYTES:
            cut = _char_boundary(line, MAX_LINE_BYTES)
            self._emit(line[:cut], 0)
            line = line[cut:]
        self._emit(line, newline)

    def _emit(self, line: bytes, newline: int) -> None:
        self.offset += len(line) + newline
        text = line.decode("utf-8", "replace")
        self.sink(self.stream, text[:-1] if text.endswith("\r") else text, self.offset)


def _char_boundary(data: bytes, limit: int) -> int:
    """The largest cut at or below ``limit`` that does not split a UTF-8 sequence."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > limit - 4 else limit


class _MarkerReader:
    """Takes the wrapper's first line off the front of a live step's stdout: the PGID
    marker, or the error marker of a wrapper that could not start the step."""

    def __init__(self, splitter: LineSplitter) -> None:
        self.splitter = splitter
        self.head: bytes | None = b""
        self.pgid: int | None = None
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        if self.head is None:
            self.splitter.feed(data)
            return
        self.head += data
        newline = self.head.find(b"\n")
        if newline < 0:
            return
        line, rest, self.head = self.head[:newline], self.head[newline + 1:], None
        match = re.fullmatch(rb"(\d+)", line.removeprefix(PGID_MARKER).strip())
        if line.startswith(PGID_MARKER) and match:
            self.pgid = int(match.group(1))
            self.splitter.feed(rest)
        elif line.startswith(ERROR_MARKER):
            self.error = line.removeprefix(ERROR_MARKER).decode("utf-8", "replace").strip()
            self.splitter.feed(rest)
        else:  # not our wrapper's first line: hand everything on unchanged
            self.splitter.feed(line + b"\n" + rest)

    def close(self) -> None:
        if self.head:
            self.splitter.feed(self.head)
        self.head = None
        self.splitter.close()


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
        self.connection = Connection(
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
        except paramiko.SSHException as exc:
            raise SSHError(f"SSH negotiation with {where} failed: {_first_line(exc)}") from None
        except OSError as exc:
            raise SSHError(f"cannot reach {where}: {exc.strerror or _first_line(exc)}") from None

    # -- steps ------------------------------------------------------------------------

    def start_step(self, where: StepLocation, command: str, sink: OutputSink,
                   control: StepControl, *, prepare: list[StepLocation] | None = None
                   ) -> StepResult:
        dirs = [where.path] + [p.path for p in prepare or [] if p.path != where.path]
        channel = self._open(remote_script(START_SCRIPT, command, *dirs))
        stdout = LineSplitter("stdout", sink)
        marker = _MarkerReader(stdout)
        stderr = LineSplitter("stderr", sink)
        result = self._follow(channel, marker, stdout, stderr, where, control)
        if result.exit_code == NO_RUN_DIR and marker.pgid is None:
            result.reason = f"could not create the run directory {where.path} on the server"
            if marker.error:
                result.reason += f": {marker.error[:300]}"
        return result

    def attach_step(self, where: StepLocation, offsets: dict[str, int], sink: OutputSink,
                    control: StepControl) -> StepResult:
        out, err = offsets.get("stdout", 0), offsets.get("stderr", 0)
        channel = self._open(remote_script(ATTACH_SCRIPT, where.path, str(out + 1),
                                           str(err + 1)))
        stdout = LineSplitter("stdout", sink, out)
        stderr = LineSplitter("stderr", sink, err)
        result = self._follow(channel, stdout, stdout, stderr, where, control)
        if not result.lost:
            status = self.step_status(where)
            result.exit_code = status.exit_code
            if status.state == "vanished":
                result.reason = ("the step's processes are gone and left no exit status "
                                 "(killed, or the server restarted)")
        return result

    def step_status(self, where: StepLocation) -> RemoteStatus:
        words = self._short(remote_script(STATUS_SCRIPT, where.path)).split()
        if len(words) != 3 or words[0] not in ("missing", "running", "exited", "vanished"):
            raise SSHError(f"unexpected answer from the step status check: {words!r:.100}")
        state, pgid, code = words
        return RemoteStatus(state, int(pgid) if pgid.isdigit() else None,
                            int(code) if code.lstrip("-").isdigit() else None)

    def signal(self, where: StepLocation, signal_name: str) -> bool:
        try:
            exit_code, _ = self._control(remote_script(SIGNAL_SCRIPT, signal_name,
                                                       where.path))
        except SSHError as exc:  # best effort: the caller bounds the wait
            log.warning("%s: sending %s to %s failed: %s", self.target.name, signal_name,
                        where.path, exc)
            return False
        return exit_code == 0

    def clean(self, host_dir: str, root: str, retention_seconds: float) -> None:
        """Remove the host's run directory; and, if this server's run root was not
        swept in the last :data:`SWEEP_INTERVAL`, every job directory there older than
        ``retention_seconds``."""
        target = self.target
        server = (target.address, target.port, target.user, root)
        swept = _last_sweep.get(server)
        sweep = swept is None or time.monotonic() - swept >= SWEEP_INTERVAL
        if sweep:
            minutes = str(max(1, int(retention_seconds // 60)))
            command = remote_script(CLEAN_SCRIPT, host_dir, root, minutes)
        else:
            command = remote_script(REMOVE_SCRIPT, host_dir)
        try:
            self._short(command)
        except SSHError as exc:
            log.warning("%s: removing %s failed: %s", target.name, host_dir, exc)
            return
        if sweep:
            _last_sweep[server] = time.monotonic()

    def close(self) -> None:
        self.connection.close()

    # -- plumbing ---------------------------------------------------------------------

    def _open(self, command: str) -> paramiko.Channel:
        transport = self.connection.transport
        if transport is None or not transport.is_active():
            SSH_FAILURES.labels("dropped").inc()
            raise SSHError("connection lost")
        try:
            channel = transport.open_session(window_size=self.window,
                                             max_packet_size=self.packet_size,
                                             timeout=self.connect_timeout)
            channel.exec_command(command)
            channel.shutdown_write()  # the command gets EOF on stdin, never our stdin
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

    def _follow(self, channel: paramiko.Channel, stdout_in: LineSplitter | _MarkerReader,
                stdout: LineSplitter, stderr: LineSplitter, where: StepLocation,
                control: StepControl) -> StepResult:
        """Read a step's channel until it ends, the connection breaks, or ``control``
        stops it (TERM, then KILL after the grace period, then give up waiting)."""
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
                stdout_in.feed(channel.recv(READ_CHUNK))
            for _ in range(CHUNKS_PER_ROUND):
                if not channel.recv_stderr_ready():
                    break
                stderr.feed(channel.recv_stderr(READ_CHUNK))
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
        stdout_in.close()
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


# The kind of a failed connect (tasks.metrics.SSH_FAILURE_REASONS), by the exception
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
