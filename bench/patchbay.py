"""Patchbay under benchmark: a real ``python app.py`` process, clients that watch its
jobs over Socket.IO, and a sampler of the server's CPU and memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import engineio
import psutil
import requests
import socketio

from tests.support.live_server import DEFAULT_PASSWORD, LiveServer, handshake, start_live_server

RUNBOOKS = Path(__file__).resolve().parent / "runbooks"
STARTER = "alice"  # operator: starts the jobs
WATCHER = "watcher"  # viewer: subscribes to them
IDLE = "idle"  # viewer: connected, watching nothing
# websocket-client checks UTF-8 in pure Python (70% of a watching client's CPU at 50,000
# lines/s): a browser does it in C, so the measuring client skips it.
CLIENT_WEBSOCKET_OPTIONS = {"skip_utf8_validation": True}
USERS = [(STARTER, DEFAULT_PASSWORD, "operator"), (WATCHER, DEFAULT_PASSWORD, "viewer"),
         (IDLE, DEFAULT_PASSWORD, "viewer")]


def start_server(directory: Path, inventory: Path, *, max_hosts: int,
                 connect_timeout: int) -> LiveServer:
    """A fresh server process and database, tuned to run ``max_hosts`` at once."""
    return start_live_server(directory, inventory=inventory, runbook_dir=RUNBOOKS, users=USERS,
                             env={"PATCHBAY_MAX_CONCURRENT_HOSTS": str(max_hosts),
                                  "PATCHBAY_DEFAULT_PARALLEL": str(max_hosts),
                                  "PATCHBAY_SSH_CONNECT_TIMEOUT": str(connect_timeout),
                                  "PATCHBAY_LOG_LEVEL": "WARNING",
                                  # hundreds of watchers share one user here
                                  "PATCHBAY_MAX_SOCKETS_PER_USER": "100000",
                                  # hundreds of watchers connect from loopback at once
                                  "PATCHBAY_MAX_HANDSHAKES_PER_ADDRESS": "100000",
                                  "PATCHBAY_MAX_CONNECTIONS_PER_ADDRESS": "0"})


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class Sampler:
    """Samples a process's RSS (and CPU) every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.rss: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self.rss_before = self.process.memory_info().rss
        self.cpu_before = cpu_seconds(self.process)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.rss_after = self.process.memory_info().rss
        self.cpu_after = cpu_seconds(self.process)
        self.wall = time.monotonic() - self.started

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.rss.append((time.monotonic() - self.started, self.process.memory_info().rss))

    @property
    def rss_peak(self) -> int:
        return max([self.rss_before, self.rss_after] + [rss for _, rss in self.rss])

    @property
    def cpu(self) -> float:
        return self.cpu_after - self.cpu_before


@dataclass
class Watch:
    """What one client saw of one job: every event, with its arrival time.

    The job counts as delivered (``done``) once every ``seq`` up to ``job_finished``'s
    has arrived (python-socketio's stock client handles each message in a thread of its
    own, so batches can be handled out of order).
    """

    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    arrivals: dict[int, float] = field(default_factory=dict)
    replayed: set[int] = field(default_factory=set)
    last_seq: int | None = None
    finished_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, payload: dict[str, Any]) -> None:
        now = time.time()
        with self.lock:
            for event in payload["events"]:
                if event["seq"] in self.events:
                    continue
                self.events[event["seq"]] = event
                self.arrivals[event["seq"]] = now
                if payload.get("replay"):
                    self.replayed.add(event["seq"])
                if event["type"] == "job_finished":
                    self.last_seq = event["seq"]
            if self.finished_at is None and self.complete():
                self.finished_at = now
                self.done.set()

    def complete(self) -> bool:
        """Every ``seq`` from 1 to the job's last (``job_finished``) arrived."""
        return self.last_seq is not None and len(self.events) == self.last_seq

    def output_lines(self) -> int:
        return sum(len(e["data"]["lines"]) for e in self.events.values()
                   if e["type"] == "output")


def login(server: LiveServer, username: str) -> requests.Session:
    return server.login(username, DEFAULT_PASSWORD)


class _InlineEngineIO(engineio.Client):
    """Handles each message in the read loop's thread. python-engineio's client starts
    a new thread per message; at 50 watching clients in one process that thread churn,
    not the server, set the measured delivery time."""

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("run_async", None)
        return super()._trigger_event(event, *args, **kwargs)


class MeasuringClient(socketio.Client):
    """A python-socketio client cheap enough to run dozens of in one process."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InlineEngineIO


def watching_client(server: LiveServer, http: requests.Session,
                    handler: Callable[[dict[str, Any]], None]) -> socketio.Client:
    """A connected client that hands every ``job:events`` payload to ``handler``."""
    client = MeasuringClient(http_session=http, reconnection=False,
                             websocket_extra_options=CLIENT_WEBSOCKET_OPTIONS)
    client.on("job:events", handler)
    client.connect(server.url, transports=["websocket"], wait_timeout=30,
                   auth=handshake(http))
    return client


def start_job(client: socketio.Client, runbook: str, params: dict[str, Any],
              servers: list[str]) -> int:
    ack = client.call("job:start", {"runbook": runbook, "params": params, "servers": servers,
                                    "strategy": {"parallel": len(servers)}}, timeout=60)
    if not ack.get("ok"):
        raise RuntimeError(f"job:start refused: {ack}")
    return ack["job_id"]


def wait(event: threading.Event, timeout: float, what: str) -> None:
    if not event.wait(timeout):
        raise TimeoutError(f"{what} not done within {timeout} s")
