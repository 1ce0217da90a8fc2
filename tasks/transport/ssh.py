"""SSH transport: the :class:`~tasks.transport.protocol.HostSession` of a real server.

A session is one connection per server per job (:mod:`tasks.transport.connecting`:
Fabric opens and authenticates it, checking the host key by
:mod:`tasks.transport.host_keys` with a key from :mod:`tasks.transport.client_keys`);
every step reuses it. Its steps' output is read from paramiko channels of that
connection directly (:mod:`tasks.transport.step_reader`), and a stopped step's process
group gets TERM, then KILL after the grace period (:mod:`tasks.transport.stop_sequence`).

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

import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import paramiko

from tasks.meters import SSH_CONNECT_SECONDS, SSH_FAILURES
from tasks.transport.agent import Agent, AttachHead, agent_start_failure
from tasks.transport.connecting import connect_failure_kind, new_connection, open_connection
from tasks.transport.control_channels import read_control_output, read_first_line
from tasks.transport.error_text import first_line
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
    ATTACH_SCRIPT,
    CLEAN_SCRIPT,
    REMOVE_REQUEST,
    REMOVE_SCRIPT,
    SIGNAL_SCRIPT,
    STATUS_SCRIPT,
    remote_script,
    step_request,
)
from tasks.transport.step_output import LineSplitter, StepStream
from tasks.transport.step_reader import follow
from tasks.transport.stop_sequence import StopSequence

log = logging.getLogger(__name__)

# paramiko checks every packet's MAC with util.constant_time_bytes_eq, a Python loop
# over its 32 bytes; hmac.compare_digest is the same constant-time comparison in C.
# packet.py looks the function up on the module at each call, so this reaches it.
paramiko.util.constant_time_bytes_eq = hmac.compare_digest

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

SSHError = TransportError  # the name callers used before the Transport protocol

# The retention sweep (CLEAN_SCRIPT) runs on a server (address, port, user, run root)
# at most once per SWEEP_INTERVAL seconds in each console process: leftovers are days
# old before they are due, so sweeping at every finished host bought nothing but CPU
# on the server (a `find` over the run root for every host of every job).
SWEEP_INTERVAL = 3600.0
_last_sweep: dict[tuple[str, int, str, str], float] = {}


class SSHHostSession:
    """One authenticated connection to one server, reused for all of a job's steps."""

    def __init__(self, target: Target, connect_timeout: float = 10,
                 kill_grace: float = 5, window: int = 32_768) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.kill_grace = kill_grace
        self.window = max(MIN_WINDOW, window)
        self.packet_size = min(MAX_PACKET, max(MIN_PACKET, self.window // 4))
        self.key_file = Path(target.key_path).expanduser() if target.key_path else None
        self._agent: Agent | None = None
        self.connection = new_connection(target, connect_timeout)

    def connect(self) -> None:
        """Open the connection; raise :class:`SSHError` with a one-line reason. The time
        it took, or the kind of failure, goes to this process's metrics."""
        started = time.monotonic()
        try:
            open_connection(self.connection, self.target, self.key_file,
                            self.connect_timeout)
        except SSHError as exc:
            SSH_FAILURES.labels(connect_failure_kind(exc)).inc()
            raise
        SSH_CONNECT_SECONDS.observe(time.monotonic() - started)

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
            raise SSHError(f"could not start the step: {first_line(exc)}") from None
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
        head = AttachHead(stdout, stderr)
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

    def _agent_for(self, host_dir: str) -> Agent | StepResult:
        """The session's agent for ``host_dir``, started if there is none (or it died).
        A :class:`StepResult` (exit code 125) when it could not make the directory."""
        agent = self._agent
        if agent is not None and agent.host_dir == host_dir and agent.alive():
            return agent
        self._agent = None
        channel = self._open(remote_script(AGENT_SCRIPT, host_dir, secrets.token_hex(4)),
                             stdin=True)
        first, rest = read_first_line(channel, self.connect_timeout)
        if first.startswith(AGENT_MARKER) and first[len(AGENT_MARKER):].strip().isdigit():
            self._agent = Agent(channel, host_dir, rest)
            return self._agent
        channel.close()
        return agent_start_failure(first, channel, host_dir)

    def _remove_by(self, agent: Agent) -> None:
        """Have the agent remove its run directory; wait for it within the timeout."""
        try:
            agent.channel.sendall(REMOVE_REQUEST)
            agent.channel.shutdown_write()
            if not agent.channel.status_event.wait(self.connect_timeout):
                raise SSHError(f"removing the run directory took over "
                               f"{self.connect_timeout:g} s")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"removing the run directory failed: {first_line(exc)}"
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
            raise SSHError(f"could not start command: {first_line(exc)}") from None
        return channel

    def _short(self, command: str) -> str:
        """Run a short control command; its stdout. Raises :class:`SSHError` when the
        connection is gone."""
        return self._control(command)[1]

    def _control(self, command: str) -> tuple[int | None, str]:
        """Run a short control command on a channel of its own: its exit status (None
        if it sent none) and stdout, within ``connect_timeout``
        (:mod:`tasks.transport.control_channels`)."""
        return read_control_output(self._open(command), self.connect_timeout)

    def _follow(self, channel: paramiko.Channel, feed_stdout: Callable[[bytes], None],
                feed_stderr: Callable[[bytes], None], stdout: StepStream,
                stderr: StepStream, where: StepLocation, control: StepControl, *,
                keep_channel: bool) -> StepResult:
        """Read a step's output (:func:`tasks.transport.step_reader.follow`), stopping it
        when ``control`` asks: TERM, then KILL after the grace period, then give up
        waiting. An agent's channel (``keep_channel``) stays open for its next step."""
        stop = StopSequence(lambda signal_name: self._stop(where, signal_name),
                            self.kill_grace)
        result = follow(channel, feed_stdout, feed_stderr, stdout, stderr, control, stop,
                        lambda: self.step_status(where).state == "running",
                        keep_channel=keep_channel)
        if result.lost:
            SSH_FAILURES.labels("dropped").inc()
        return result

    def _stop(self, where: StepLocation, signal_name: str) -> bool:
        """Send ``signal_name`` to the step's process group; whether it was sent."""
        if self.signal(where, signal_name):
            return True
        log.warning("%s: could not send %s to the step in %s", self.target.name,
                    signal_name, where.path)
        return False
