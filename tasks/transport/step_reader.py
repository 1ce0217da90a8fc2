"""Reading a step's output from its channel, until both streams have the step's end
marker, the channel ends, the connection breaks, or the step's stop sequence
(:mod:`tasks.transport.stop_sequence`) gives up on it.

Output is read from the paramiko channel directly: Fabric's runner decodes each
1,000-byte chunk on its own (splitting multi-byte UTF-8) and keeps the whole output
in memory, while the step's streams (:class:`~tasks.transport.step_output.StepStream`)
cut lines from the bytes, decode them whole and buffer only the current partial line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paramiko

from tasks.transport.protocol import StepControl, StepResult
from tasks.transport.step_output import StepStream
from tasks.transport.stop_sequence import StopSequence

READ_CHUNK = 65_536
CHUNKS_PER_ROUND = 16
TICK_SECONDS = 0.1
EOF_GRACE = 2.0  # seconds to wait for end of output after the exit status

Feed = Callable[[bytes], None]


class _ChannelReader:
    """One step's channel and its two streams, read a bounded amount per round."""

    def __init__(self, channel: paramiko.Channel, feed_stdout: Feed, feed_stderr: Feed,
                 stdout: StepStream, stderr: StepStream) -> None:
        self.channel = channel
        self.transport = channel.get_transport()
        self.feed_stdout = feed_stdout
        self.feed_stderr = feed_stderr
        self.stdout = stdout
        self.stderr = stderr
        # Both output buffers set one event when data arrives: a green-friendly wait on
        # either stream (selecting on the channel's pipe confuses eventlet's hub when
        # the pipe's fd number is reused by the next step's channel).
        self.data_ready = threading.Event()
        channel.in_buffer.set_event(self.data_ready)
        channel.in_stderr_buffer.set_event(self.data_ready)
        self.exited_at: float | None = None  # when the exit status was first seen

    def read_round(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for data, then feed what is there. A bounded read
        per round: a command printing without pause must still let the stop checks run."""
        self.data_ready.wait(wait)
        self.data_ready.clear()
        channel = self.channel
        for _ in range(CHUNKS_PER_ROUND):
            if not channel.recv_ready():
                break
            self.feed_stdout(channel.recv(READ_CHUNK))
        for _ in range(CHUNKS_PER_ROUND):
            if not channel.recv_stderr_ready():
                break
            self.feed_stderr(channel.recv_stderr(READ_CHUNK))

    def streams_ended(self) -> bool:
        return self.stdout.ended and self.stderr.ended

    def data_pending(self) -> bool:
        return self.channel.recv_ready() or self.channel.recv_stderr_ready()

    def output_over(self) -> bool:
        """The exit status came and no more output will: sshd may send the exit status
        before it has drained the command's stderr, so EOF (no more data on either
        stream) or the close is the end. A background process holding the output open
        never sends EOF, so after the exit wait for it only a moment."""
        channel = self.channel
        if not channel.exit_status_ready() or channel.recv_ready() \
                or channel.recv_stderr_ready():
            return False
        if channel.eof_received or channel.closed:
            return True
        self.exited_at = self.exited_at or time.monotonic()
        return time.monotonic() - self.exited_at > EOF_GRACE

    def connection_lost(self) -> bool:
        return not self.transport.is_active() or (self.channel.closed and
                                                  not self.channel.exit_status_ready())

    def offsets(self) -> dict[str, int]:
        return {"stdout": self.stdout.offset, "stderr": self.stderr.offset}


def follow(channel: paramiko.Channel, feed_stdout: Feed, feed_stderr: Feed,
           stdout: StepStream, stderr: StepStream, control: StepControl,
           stop: StopSequence, step_running: Callable[[], bool], *,
           keep_channel: bool) -> StepResult:
    """Read a step's output until both streams have its end marker, the channel ends,
    the connection breaks, or ``stop`` gives up waiting (``control`` asks it to stop
    the step). An agent's channel (``keep_channel``) stays open for its next step.
    ``step_running()`` tells whether the step's process group still runs."""
    reader = _ChannelReader(channel, feed_stdout, feed_stderr, stdout, stderr)
    wait = TICK_SECONDS
    while True:
        reader.read_round(wait)
        if reader.streams_ended():
            break
        wait = 0 if reader.data_pending() else TICK_SECONDS
        due = control.tick()
        if due is not None:
            wait = min(wait, due)
        if reader.output_over():
            break
        if reader.connection_lost():
            return StepResult(None, stop.reason, lost=True, offsets=reader.offsets(),
                              signal=stop.signal)
        if stop.check(control):
            channel.close()  # the remote ignores even KILL: stop waiting for it
            break
    return _ended(reader, stop, step_running, keep_channel)


def _ended(reader: _ChannelReader, stop: StopSequence, step_running: Callable[[], bool],
           keep_channel: bool) -> StepResult:
    """The result once reading is over: by the end markers, else by the channel."""
    channel, stdout, stderr = reader.channel, reader.stdout, reader.stderr
    if reader.streams_ended():
        if not keep_channel:
            channel.close()
        stop.finish(step_running)
        return StepResult(stdout.exit_code, stop.reason, offsets=reader.offsets(),
                          signal=stop.signal)
    stdout.close()
    stderr.close()
    code = channel.recv_exit_status() if channel.exit_status_ready() else None
    channel.close()
    stop.finish(step_running)
    if code == -1 and stop.reason is None and _connection_dropped(reader.transport):
        return StepResult(None, stop.reason, lost=True, offsets=reader.offsets())
    return StepResult(code, stop.reason, offsets=reader.offsets(), signal=stop.signal)


def _connection_dropped(transport: paramiko.Transport) -> bool:
    """No exit status means the remote died by a signal or the connection dropped;
    paramiko closes the channel a moment before it marks the transport inactive."""
    deadline = time.monotonic() + 1
    while transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.02)  # bounded wait for paramiko's reader to notice the EOF
    return not transport.is_active()
