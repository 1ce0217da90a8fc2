"""The boundary between the engine and the servers: the ``Transport`` protocol.

A transport opens one :class:`HostSession` per server per job. Through it the engine
starts a step, reads a step's output from given byte offsets, asks a step's status,
signals a step's process group and tidies the run directories. Every step runs on the
server detached from the connection, writing its output to files in its run directory
(see ``docs/remote-steps.md``), so a session may break and a later one, in this process
or another, re-attaches to the same step and goes on at the next byte.

:mod:`tasks.transport.ssh` implements this over SSH; ``tests/support/fake_transport.py``
implements it in
memory for the engine's unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

STREAMS = ("stdout", "stderr")


class TransportError(Exception):
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


# (stream, line, byte offset in that stream just after the line) -> None
OutputSink = Callable[[str, str, int], None]


class StepControl(Protocol):
    """What a running step asks its owner while it reads output."""

    def stop_reason(self) -> str | None:
        """``"cancel"``, ``"timeout"`` or ``"output_limit"`` once the step must stop."""

    def tick(self) -> float | None:
        """Called at least every 100 ms; may return the seconds until it is due again."""


@dataclass
class StepResult:
    """How reading a step ended.

    ``lost``: the connection broke before the step ended (the step goes on remotely).
    ``exit_code``: the step's own exit status, ``None`` when it has none (killed).
    ``stopped``: why we stopped it, if we did.
    ``offsets``: bytes of each stream read so far.
    ``signal``: the last signal sent to stop it (``"TERM"``, or ``"KILL"`` after the
    grace period), if one was sent.
    """

    exit_code: int | None
    stopped: str | None = None
    lost: bool = False
    offsets: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    signal: str | None = None


@dataclass
class RemoteStatus:
    """What a step's run directory says.

    ``state``: ``"missing"`` (no run directory or never launched), ``"running"``,
    ``"exited"`` (an exit status was written) or ``"vanished"`` (its processes are gone
    without an exit status: killed, or the server restarted).
    """

    state: str
    pgid: int | None = None
    exit_code: int | None = None
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StepLocation:
    """Where a step keeps its files: the host's run directory
    ``<root>/<job uid>/<host>``, where the step's own files are named by its key
    (``<key>.start``, ``<key>.pgid``, ``<key>.status``; docs/remote-steps.md). ``path``
    names the step in that directory (the fake transport keys its steps by it)."""

    root: str
    job_uid: str
    host: str
    key: str

    @property
    def host_dir(self) -> str:
        return f"{self.root.rstrip('/')}/{self.job_uid}/{self.host}"

    @property
    def path(self) -> str:
        return f"{self.host_dir}/{self.key}"


class HostSession(Protocol):
    """One connection to one server, reused for all of a job's steps there."""

    def connect(self) -> None:
        """Open the connection; raise :class:`TransportError` with a one-line reason."""

    def start_step(self, where: StepLocation, command: str, sink: OutputSink,
                   control: StepControl, secret_values: Sequence[str] = ()) -> StepResult:
        """Start ``command`` detached as step ``where`` and stream its output until it
        ends, it is stopped, or the connection breaks. A line too long to hand on
        whole is never cut inside one of ``secret_values`` (the sink masks each piece on its
        own: :class:`~tasks.transport.step_output.LineSplitter`)."""

    def attach_step(self, where: StepLocation, offsets: dict[str, int], sink: OutputSink,
                    control: StepControl, secret_values: Sequence[str] = ()) -> StepResult:
        """Read a started step's output from ``offsets`` on, until it ends (``secret_values``
        as for :meth:`start_step`)."""

    def step_status(self, where: StepLocation) -> RemoteStatus:
        """The step's state as its run directory shows it."""

    def signal(self, where: StepLocation, signal_name: str) -> bool:
        """Send ``TERM`` or ``KILL`` to the step's process group; False if none."""

    def clean(self, host_dir: str, root: str, retention_seconds: float) -> None:
        """Remove a finished host's run directory, and any job directory under ``root``
        older than ``retention_seconds``."""

    def close(self) -> None:
        """Close the connection (steps keep running on the server)."""


Transport = Callable[[Target], HostSession]
