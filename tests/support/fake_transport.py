"""An in-memory fleet for the engine's unit tests: the :class:`~tasks.transport.protocol.Transport`
protocol without SSH.

Each fake server keeps its steps' run directories by ``StepLocation.path``: the bytes
written to ``out`` and ``err``, a PGID, the exit status (``None`` while running, or for
good when the step was killed) and whether it still runs. A step is "remote": it runs in
a thread of its own, following the :class:`Script` the test chose for its command, and
keeps writing whether or not any session reads it. So, as with the real detached steps,
a dropped connection or a dead console loses nothing, and a later session re-attaches at
any byte offset.

The test steers the fleet:

* :meth:`FakeFleet.script` says what a command does (per server or for all of them); a
  script prints chunks, may pause, may hang on a ``threading.Event`` until the test sets
  it, and may ignore TERM;
* :meth:`FakeFleet.drop` breaks a server's connections (reading returns ``lost``), and
  with :meth:`FakeFleet.unreachable` / :meth:`FakeFleet.refuse` connecting fails;
* :meth:`FakeConsole.crash` freezes every session one console opened, as if its process
  had died: no call on them ever returns, so that console writes no further event.

Every call the engine made is kept in :attr:`FakeFleet.calls`, every step ever started
in :attr:`FakeFleet.steps`, and the most steps that ran at once in
:attr:`FakeFleet.peak_running`. One condition variable guards all of it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tasks.transport.protocol import (
    STREAMS,
    OutputSink,
    RemoteStatus,
    StepControl,
    StepLocation,
    StepResult,
    Target,
    TransportError,
)
from tasks.transport.step_output import LineSplitter

TICK = 0.05  # a reader calls control.tick() at least this often
VANISHED = ("the step's processes are gone and left no exit status "
            "(killed, or the server restarted)")

# A script item: (stream, data) to write, an Event to hang on, or seconds to pause.
Item = tuple[str, bytes | str] | threading.Event | float


@dataclass
class Script:
    """What a fake step does: each item of ``output`` in turn, then exit ``exit_code``.

    ``(stream, data)`` writes ``data`` (bytes, or text as UTF-8) to ``stdout`` or
    ``stderr``; a ``threading.Event`` makes the step hang until the test sets it; a number
    pauses that many seconds. TERM ends the step without an exit status, unless
    ``ignore_term``; KILL always does."""

    output: list[Item] = field(default_factory=list)
    exit_code: int = 0
    ignore_term: bool = False


def lines(stream: str, *texts: str) -> list[Item]:
    """One ``(stream, text + newline)`` item per text."""
    return [(stream, f"{text}\n") for text in texts]


class FakeStep:
    """One step's run directory on a fake server, and the "process" that writes it."""

    def __init__(self, fleet: FakeFleet, host: str, path: str, command: str,
                 script: Script, pgid: int) -> None:
        self.fleet = fleet
        self.host = host
        self.path = path
        self.command = command
        self.script = script
        self.pgid = pgid
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.exit_code: int | None = None
        self.running = True
        self.signals: list[str] = []
        self._gone = threading.Event()  # set once it has ended, however

    def __repr__(self) -> str:
        return f"<FakeStep {self.host} {self.command!r} running={self.running}>"

    @property
    def out(self) -> bytes:
        with self.fleet.cond:
            return bytes(self.data["stdout"])

    @property
    def err(self) -> bytes:
        with self.fleet.cond:
            return bytes(self.data["stderr"])

    def run(self) -> None:
        """The remote process: its script, then its exit status."""
        for item in self.script.output:
            if isinstance(item, threading.Event):
                while not item.wait(TICK):
                    if self._gone.is_set():
                        return
            elif isinstance(item, int | float):
                if self._gone.wait(item):
                    return
            else:
                stream, data = item
                with self.fleet.cond:
                    if not self.running:
                        return
                    self.data[stream] += data.encode() if isinstance(data, str) else data
                    self.fleet.changed()
        self.fleet.end(self, self.script.exit_code)


@dataclass
class _Block:
    """Why connecting to a server fails, and until when: an Event the test sets, a
    number of refused attempts, or ``None`` for good."""

    reason: str  # "{where}" becomes address:port
    until: threading.Event | int | None

    def refuses(self) -> bool:
        if isinstance(self.until, threading.Event):
            return not self.until.is_set()
        if isinstance(self.until, int):
            self.until -= 1
            return self.until >= 0
        return True


@dataclass
class FakeServer:
    name: str
    runs: dict[str, FakeStep] = field(default_factory=dict)  # by StepLocation.path
    dirs: set[str] = field(default_factory=set)
    generation: int = 0  # bumped by a drop: sessions of older generations are broken
    block: _Block | None = None


class FakeFleet:
    """In-memory servers by target name; see the module docstring."""

    def __init__(self, kill_grace: float = 0.2, default: Script | None = None) -> None:
        self.cond = threading.Condition()
        self.kill_grace = kill_grace
        self.default = default or Script(lines("stdout", "ok"))
        self.servers: dict[str, FakeServer] = {}
        self.steps: list[FakeStep] = []
        self.calls: list[tuple] = []
        self.running_now = 0
        self.peak_running = 0
        self.version = 0  # bumped on every change readers may wait for
        self._rules: list[tuple[str | None, str, Script]] = []
        self._pgids = itertools.count(4000)
        self._console = FakeConsole(self)

    # -- what the test sets up ------------------------------------------------------

    def script(self, match: str, script: Script, host: str | None = None) -> None:
        """Commands containing ``match`` (on ``host``, or on any server) follow
        ``script``. Rules for a server beat rules for all; a later rule beats an earlier."""
        with self.cond:
            self._rules.append((host, match, script))

    def transport(self, target: Target) -> FakeHostSession:
        """The :data:`~tasks.transport.protocol.Transport` of the default console."""
        return self._console.transport(target)

    def console(self) -> FakeConsole:
        """A console of its own (one per engine process that may "crash")."""
        return FakeConsole(self)

    def drop(self, host: str, *, reconnect: threading.Event | int | bool = True) -> None:
        """Break every open connection to ``host``. ``reconnect``: True, connecting
        works at once; False, never again; an Event, once it is set; a number, after
        that many refused attempts."""
        with self.cond:
            server = self.server(host)
            server.generation += 1
            if reconnect is not True:
                until = None if reconnect is False else reconnect
                server.block = _Block("cannot reach {where}: No route to host", until)
            self.changed()

    def unreachable(self, host: str, until: threading.Event | int | None = None) -> None:
        """Connecting to ``host`` fails (for good, until an Event is set, or for a
        number of attempts); open connections stay up."""
        with self.cond:
            self.server(host).block = _Block("cannot reach {where}: No route to host", until)

    def refuse(self, host: str, until: threading.Event | int | None = None) -> None:
        """Like :meth:`unreachable`, as a closed SSH port says it."""
        with self.cond:
            self.server(host).block = _Block("connection refused by {where}", until)

    def close(self) -> None:
        """End every step still running (test teardown)."""
        with self.cond:
            running = [step for step in self.steps if step.running]
        for step in running:
            self.end(step, None)

    # -- what the test asks ---------------------------------------------------------

    def step(self, host: str, match: str) -> FakeStep:
        """The latest step started on ``host`` whose command contains ``match``."""
        with self.cond:
            found = [s for s in self.steps if s.host == host and match in s.command]
        if not found:
            raise LookupError(f"no step matching {match!r} was started on {host}")
        return found[-1]

    def started(self, host: str) -> list[str]:
        """The commands started on ``host``, in order."""
        return [call[3] for call in self.calls_of("start", host)]

    def calls_of(self, kind: str, host: str | None = None) -> list[tuple]:
        """Recorded calls of one kind: ``("connect", host)``, ``("start", host, path,
        command)``, ``("attach", host, path, offsets)``, ``("status", host, path)``,
        ``("signal", host, path, name)``, ``("clean", host, host_dir)``."""
        with self.cond:
            return [c for c in self.calls if c[0] == kind and (host is None or c[1] == host)]

    # -- the servers' side (called with or without the lock, as noted) ---------------

    def server(self, name: str) -> FakeServer:
        """(under the lock)"""
        return self.servers.setdefault(name, FakeServer(name))

    def changed(self) -> None:
        """(under the lock) Wake every reader."""
        self.version += 1
        self.cond.notify_all()

    def script_for(self, host: str, command: str) -> Script:
        """(under the lock)"""
        for wanted in (host, None):
            for rule_host, match, script in reversed(self._rules):
                if rule_host == wanted and match in command:
                    return script
        return self.default

    def launch(self, host: str, where: StepLocation, command: str) -> FakeStep:
        """(under the lock) Start a step in ``where`` on ``host``, in its own thread."""
        server = self.server(host)
        step = FakeStep(self, host, where.path, command, self.script_for(host, command),
                        next(self._pgids))
        server.runs[where.path] = step
        self.steps.append(step)
        self.running_now += 1
        self.peak_running = max(self.peak_running, self.running_now)
        threading.Thread(target=step.run, daemon=True,
                         name=f"fake step {host} {where.key}").start()
        self.changed()
        return step

    def end(self, step: FakeStep, exit_code: int | None) -> None:
        """The step's process ends, with ``exit_code`` (None: killed)."""
        with self.cond:
            if not step.running:
                return
            step.running = False
            step.exit_code = exit_code
            step._gone.set()
            self.running_now -= 1
            self.changed()

    def deliver(self, step: FakeStep, signal_name: str) -> None:
        """(without the lock) ``kill -s NAME -- -PGID``."""
        with self.cond:
            step.signals.append(signal_name)
            ignored = signal_name == "TERM" and step.script.ignore_term
        if not ignored:
            self.end(step, None)


class FakeConsole:
    """The sessions of one console process; :meth:`crash` kills that process."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.crashed = False
        self._inside = 0  # threads inside a call on one of its sessions
        self._parked = 0  # of those, frozen for good

    def transport(self, target: Target) -> FakeHostSession:
        return FakeHostSession(self.fleet, self, target)

    def crash(self, timeout: float = 10) -> None:
        """From now on every call on this console's sessions blocks for good (those
        under way stop at their next line of output); returns once every thread inside
        such a call is frozen. A thread of that console outside any session call is not
        stopped: crash when each worker is reading a step."""
        cond = self.fleet.cond
        with cond:
            self.crashed = True
            self.fleet.changed()
            if not cond.wait_for(lambda: self._parked == self._inside, timeout):
                raise TimeoutError(f"{self._inside - self._parked} session call(s) "
                                   "did not stop")

    def enter(self) -> None:
        with self.fleet.cond:
            self._inside += 1
        self.park_if_crashed()

    def leave(self) -> None:
        with self.fleet.cond:
            self._inside -= 1
            self.fleet.cond.notify_all()

    def park_if_crashed(self) -> None:
        with self.fleet.cond:
            if not self.crashed:
                return
            self._parked += 1
            self.fleet.cond.notify_all()
        threading.Event().wait()  # this process is dead: its thread never goes on


class FakeHostSession:
    """One connection to one fake server (a :class:`~tasks.transport.protocol.HostSession`)."""

    def __init__(self, fleet: FakeFleet, console: FakeConsole, target: Target) -> None:
        self.fleet = fleet
        self.console = console
        self.target = target
        self.host = target.name
        self.generation: int | None = None  # the server's generation when connected
        self.closed = False

    def connect(self) -> None:
        with self._call(), self.fleet.cond:
            self.fleet.calls.append(("connect", self.host))
            server = self.fleet.server(self.host)
            if server.block is not None:
                if server.block.refuses():
                    where = f"{self.target.address}:{self.target.port}"
                    raise TransportError(server.block.reason.format(where=where))
                server.block = None
            self.generation = server.generation
            self.closed = False

    def start_step(self, where: StepLocation, command: str, sink: OutputSink,
                   control: StepControl, secret_values: Sequence[str] = ()) -> StepResult:
        with self._call():
            with self.fleet.cond:
                self._require()
                self.fleet.calls.append(("start", self.host, where.path, command))
                server = self.fleet.server(self.host)
                server.dirs.add(where.path)
                step = self.fleet.launch(self.host, where, command)
            return self._follow(step, {}, sink, control, secret_values)

    def attach_step(self, where: StepLocation, offsets: dict[str, int], sink: OutputSink,
                    control: StepControl, secret_values: Sequence[str] = ()) -> StepResult:
        with self._call():
            with self.fleet.cond:
                self._require()
                self.fleet.calls.append(("attach", self.host, where.path, dict(offsets)))
                step = self.fleet.server(self.host).runs.get(where.path)
            if step is None:  # nothing to follow, like the real attach script
                return StepResult(None, offsets=dict(offsets))
            result = self._follow(step, offsets, sink, control, secret_values)
            if not result.lost and result.exit_code is None:
                result.reason = VANISHED
            return result

    def step_status(self, where: StepLocation) -> RemoteStatus:
        with self._call(), self.fleet.cond:
            self._require()
            self.fleet.calls.append(("status", self.host, where.path))
            step = self.fleet.server(self.host).runs.get(where.path)
            if step is None:
                return RemoteStatus("missing")
            sizes = {stream: len(data) for stream, data in step.data.items()}
            if step.running:
                return RemoteStatus("running", step.pgid, None, sizes)
            if step.exit_code is not None:
                return RemoteStatus("exited", step.pgid, step.exit_code, sizes)
            return RemoteStatus("vanished", step.pgid, None, sizes)

    def signal(self, where: StepLocation, signal_name: str) -> bool:
        with self._call():
            with self.fleet.cond:
                step = self.fleet.server(self.host).runs.get(where.path)
                if not self._alive() or step is None:
                    return False
            return self._send(step, signal_name)

    def clean(self, host_dir: str, root: str, retention_seconds: float) -> None:
        with self._call(), self.fleet.cond:
            if not self._alive():
                return  # the real one logs a warning and goes on
            self.fleet.calls.append(("clean", self.host, host_dir))
            server = self.fleet.server(self.host)
            inside = host_dir.rstrip("/") + "/"
            server.runs = {p: s for p, s in server.runs.items() if not p.startswith(inside)}
            server.dirs = {p for p in server.dirs if not p.startswith(inside)}

    def close(self) -> None:
        with self.fleet.cond:
            self.closed = True

    # -- plumbing ---------------------------------------------------------------------

    @contextmanager
    def _call(self) -> Iterator[None]:
        self.console.enter()
        try:
            yield
        finally:
            self.console.leave()

    def _alive(self) -> bool:
        """(under the lock)"""
        return (not self.closed and self.generation is not None
                and self.generation == self.fleet.server(self.host).generation)

    def _require(self) -> None:
        """(under the lock)"""
        if not self._alive():
            raise TransportError("connection lost")

    def _send(self, step: FakeStep, signal_name: str) -> bool:
        with self.fleet.cond:
            if not self._alive():
                return False
            self.fleet.calls.append(("signal", self.host, step.path, signal_name))
        self.fleet.deliver(step, signal_name)
        return True

    def _follow(self, step: FakeStep, offsets: dict[str, int], sink: OutputSink,
                control: StepControl, secret_values: Sequence[str]) -> StepResult:
        """Hand the step's output to ``sink`` from ``offsets`` on until it ends, the
        connection breaks, or ``control`` stops it (TERM, then KILL after the grace)."""
        readers = {stream: LineSplitter(stream, sink, offsets.get(stream, 0), secret_values)
                   for stream in STREAMS}
        stopped: str | None = None
        term_at = 0.0
        killed = False

        def read_so_far() -> dict[str, int]:
            return {stream: reader.offset for stream, reader in readers.items()}

        while True:
            self.console.park_if_crashed()
            with self.fleet.cond:
                alive = self._alive()
                fresh = {s: bytes(step.data[s][r.offset + len(r.pending):])
                         for s, r in readers.items()}
                ended = not step.running
                seen = self.fleet.version
            if not alive:
                return StepResult(None, stopped, lost=True, offsets=read_so_far())
            for stream, reader in readers.items():
                if fresh[stream]:
                    reader.feed(fresh[stream])
            if ended:
                for reader in readers.values():
                    reader.close()
                return StepResult(step.exit_code, stopped, offsets=read_so_far())
            due = control.tick()
            now = time.monotonic()
            if stopped is None:
                stopped = control.stop_reason()
                if stopped:
                    self._send(step, "TERM")
                    term_at = now
            elif not killed and now - term_at >= self.fleet.kill_grace:
                self._send(step, "KILL")
                killed = True
            wait = TICK if due is None else max(0.0, min(TICK, due))
            with self.fleet.cond:
                self.fleet.cond.wait_for(lambda seen=seen: self.fleet.version != seen, wait)
