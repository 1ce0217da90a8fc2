"""The console's side of a server's agent shell (``AGENT_SCRIPT``, which runs a
session's steps one after the other on one channel) and of a re-attach
(``ATTACH_SCRIPT``, whose first line names the step's end-marker token)."""

from __future__ import annotations

from collections.abc import Callable

import paramiko

from tasks.transport.protocol import StepResult, TransportError
from tasks.transport.remote_scripts import ATTACH_MARKER, ERROR_MARKER, NO_RUN_DIR
from tasks.transport.step_output import StepStream


class Agent:
    """A session's agent shell on its channel: how many bytes of each stream it has
    sent since its first line (where the next step's output begins in its files, less
    what came after the last end marker, kept in ``rest``)."""

    def __init__(self, channel: paramiko.Channel, host_dir: str, rest: bytes) -> None:
        self.channel = channel
        self.host_dir = host_dir
        self.received = [len(rest), 0]  # bytes of stdout, stderr
        self.rest = [rest, b""]  # stdout, stderr read past the last step's end

    def alive(self) -> bool:
        channel = self.channel
        return not channel.closed and not channel.exit_status_ready() \
            and not channel.eof_received and channel.get_transport().is_active()

    def counted(self, stream: int, feed: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """``feed``, counting the bytes of ``stream`` (0 stdout, 1 stderr) it is given."""
        def counted_feed(data: bytes) -> None:
            self.received[stream] += len(data)
            feed(data)
        return counted_feed


def agent_start_failure(first: bytes, channel: paramiko.Channel, host_dir: str) -> StepResult:
    """Why the agent on ``channel`` did not start, by its first line (``first``) or its
    exit status: a :class:`StepResult` (exit code 125) when it could not make the run
    directory; any other failure is raised."""
    reason = f"could not create the run directory {host_dir} on the server"
    if first.startswith(ERROR_MARKER):
        detail = first[len(ERROR_MARKER):].decode("utf-8", "replace").strip()
        return StepResult(NO_RUN_DIR, reason=f"{reason}: {detail[:300]}")
    code = channel.exit_status if channel.exit_status_ready() else None
    if code == NO_RUN_DIR:
        return StepResult(NO_RUN_DIR, reason=reason)
    raise TransportError(f"the step runner did not start on the server (exit status {code})")


class AttachHead:
    """Takes ATTACH_SCRIPT's first line (the step's end-marker token) off its stdout
    and gives the token to both streams."""

    def __init__(self, stdout: StepStream, stderr: StepStream) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.head: bytes | None = b""  # the first line so far; None once it was read

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
            raise TransportError(
                f"unexpected answer from the step's run directory: {line!r:.100}")
        self.stdout.set_token(token)
        self.stderr.set_token(token)
        self.stdout.feed(rest)
