"""Follow one job to its end: every event exactly once, in ``seq`` order.

Live over Socket.IO (websocket, ``auth: {"token"}``): ``job:subscribe`` with the
highest seq up to which everything has been shown, then ``job:events`` batches, replay
and live mixed. :class:`EventLog` keys them by seq, drops ones it has, and holds one
beyond a hole until the hole is filled (over HTTP if it persists). After a drop the
socket reconnects and resubscribes from there. When the socket cannot connect while
the HTTP API answers (a proxy that refuses websockets), the job is followed by polling
``GET /api/jobs/<id>/events?after_seq=``. When nothing answers, it keeps trying, with
a growing pause, for ``reconnect_timeout`` seconds.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import socketio

from patchbay_cli.api import Api, ApiError, Unreachable
from patchbay_cli.output import Renderer

HOLE_WAIT = 1.0  # s an event may wait beyond a hole before the hole is fetched over HTTP
POLL_INTERVAL = 1.0  # s between HTTP polls of a running job
SOCKET_RETRY = 30.0  # s of following over HTTP before the socket is tried again
PAGE = 1000
BACKOFF = (0.5, 1, 2, 4, 5)
SOCKET_TIMEOUT = 10
# An error ack's code as the HTTP status the API would answer it with.
ACK_STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404}
OFFLINE_REMINDER = 30.0  # s between "still retrying" notices

_quiet = logging.getLogger("patchbay_cli.socket")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


class EventLog:
    """The events of one job shown so far: ``shown`` is the highest seq up to which
    every event has been handed on; later ones wait in ``pending`` for their turn."""

    def __init__(self, after_seq: int = 0) -> None:
        self.shown = after_seq
        self.pending: dict[int, dict[str, Any]] = {}
        self.waiting_since: float | None = None
        self.final: dict[str, Any] | None = None  # the job_finished event, once shown

    def add(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take events (any order, duplicates too); return those now due, in order."""
        for event in events:
            if event["seq"] > self.shown:
                self.pending.setdefault(event["seq"], event)
        due = []
        while self.shown + 1 in self.pending:
            self.shown += 1
            event = self.pending.pop(self.shown)
            if event.get("type") == "job_finished":
                self.final = event
            due.append(event)
        self.waiting_since = (self.waiting_since or time.monotonic()) if self.pending \
            else None
        return due

    @property
    def finished(self) -> bool:
        return self.final is not None

    def hole_overdue(self) -> bool:
        return self.waiting_since is not None and \
            time.monotonic() - self.waiting_since > HOLE_WAIT


class Dropped(Exception):
    """The live connection ended before the job did."""


class SocketRefused(Exception):
    """The socket could not connect (``auth``: the console refused the token)."""

    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


class Follower:
    """Shows one job's events through ``renderer`` until it ends; ``notice`` gets the
    client's own remarks (connection lost, falling back) for stderr."""

    def __init__(self, api: Api, token: str, job_id: int, renderer: Renderer,
                 notice: Callable[[str], None], after_seq: int = 0,
                 reconnect_timeout: float = 300) -> None:
        self.api = api
        self.token = token
        self.job_id = job_id
        self.renderer = renderer
        self.notice = notice
        self.log = EventLog(after_seq)
        self.reconnect_timeout = reconnect_timeout
        self.inbox: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        self.client: socketio.Client | None = None
        self.generation = 0
        self.failures = 0
        self.offline_since: float | None = None
        self.last_said = 0.0

    def run(self) -> dict[str, Any]:
        """Follow to the end; the ``job_finished`` event's data."""
        use_socket, told = True, False
        try:
            while not self.log.finished:
                try:
                    if use_socket:
                        self._follow_socket()
                    else:
                        self._follow_http(time.monotonic() + SOCKET_RETRY)
                        use_socket = True
                except Dropped:
                    self.notice(f"live connection to {self.api.url} lost; reconnecting "
                                f"from event {self.log.shown}")
                    self._pause()
                except SocketRefused as exc:
                    if exc.auth:
                        raise ApiError(401, "unauthorized",
                                       str(exc).removeprefix("unauthorized: ")) from None
                    if self._http_answers(str(exc)):
                        if not told:
                            self.notice(f"no live connection ({exc}); following over "
                                        f"HTTP (GET /api/jobs/{self.job_id}/events)")
                            told = True
                        use_socket = False
                except Unreachable as exc:
                    self._offline(str(exc))
        finally:
            self._close_socket()
        return self.log.final["data"] if self.log.final else {}

    # -- Socket.IO ---------------------------------------------------------------

    def _follow_socket(self) -> None:
        generation = self._connect()
        try:
            ack = self.client.call("job:subscribe", {"job_id": self.job_id,
                                                     "after_seq": self.log.shown},
                                   timeout=SOCKET_TIMEOUT)
        except socketio.exceptions.SocketIOError:  # no ack in time, or gone meanwhile
            raise Dropped() from None
        if not isinstance(ack, dict) or not ack.get("ok"):
            error = (ack if isinstance(ack, dict) else {}).get("error") or {}
            code = error.get("code", "error")
            raise ApiError(ACK_STATUS.get(code, 400), code, error.get("message", str(ack)),
                           error.get("field"))
        self._online()
        while not self.log.finished:
            try:
                tag, kind, payload = self.inbox.get(timeout=0.2)
            except queue.Empty:
                if self.log.hole_overdue():
                    self._fill_hole()
                continue
            if tag != generation:
                continue  # from an earlier connection: its events were seen, or will be
            if kind == "disconnect":
                raise Dropped()
            self._take(payload)
            if self.log.hole_overdue():
                self._fill_hole()

    def _connect(self) -> int:
        self._close_socket()
        self.generation += 1
        generation = self.generation
        refusal: list[str] = []
        client = socketio.Client(reconnection=False, logger=_quiet, engineio_logger=_quiet)
        client.on("job:events", lambda data: self.inbox.put((generation, "events", data)))
        client.on("disconnect", lambda *reason: self.inbox.put((generation, "disconnect",
                                                                None)))
        client.on("connect_error", lambda data=None: refusal.append(
            data.get("message", "") if isinstance(data, dict) else str(data or "")))
        try:
            client.connect(self.api.url, auth={"token": self.token},
                           transports=["websocket"], wait_timeout=SOCKET_TIMEOUT)
        except socketio.exceptions.ConnectionError as exc:
            why = next((r for r in refusal if r), str(exc))
            raise SocketRefused(why, auth=why.startswith("unauthorized")) from None
        self.client = client
        return generation

    def _take(self, payload: Any) -> None:
        if isinstance(payload, dict) and payload.get("job_id") == self.job_id:
            self._show(payload.get("events") or [])

    def _show(self, events: list[dict[str, Any]]) -> None:
        due = self.log.add(events)
        if due:
            self.renderer.show(due)

    def _fill_hole(self) -> None:
        """An event waits beyond a hole the socket did not fill: fetch it by seq."""
        self._show(self.api.events(self.job_id, self.log.shown, PAGE))
        self.log.waiting_since = time.monotonic() if self.log.pending else None

    def _close_socket(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            client.disconnect()

    # -- HTTP --------------------------------------------------------------------

    def _http_answers(self, why: str) -> bool:
        """Catch up over HTTP once; ``False`` (after a pause) when it fails too."""
        try:
            self._show(self.api.events(self.job_id, self.log.shown, PAGE))
        except Unreachable as exc:
            self._offline(f"{exc} (live connection: {why})")
            return False
        self._online()
        return True

    def _follow_http(self, until: float) -> None:
        """Poll until the job ends, or until ``until`` (then the socket is tried again)."""
        while not self.log.finished and time.monotonic() < until:
            page = self.api.events(self.job_id, self.log.shown, PAGE)
            self._online()
            self._show(page)
            if len(page) < PAGE and not self.log.finished:
                time.sleep(POLL_INTERVAL)

    # -- Being offline -----------------------------------------------------------

    def _online(self) -> None:
        self.failures = 0
        self.offline_since = None

    def _offline(self, why: str) -> None:
        """Nothing answered: give up after ``reconnect_timeout``, else pause and retry
        (saying so once, and again every half minute while it lasts)."""
        now = time.monotonic()
        if self.offline_since is None:
            self.offline_since = self.last_said = now
            self.notice(f"{why}; retrying for up to {self.reconnect_timeout:.0f} s")
        elif now - self.offline_since > self.reconnect_timeout:
            raise Unreachable(f"{why}; gave up after {self.reconnect_timeout:.0f} s")
        elif now - self.last_said >= OFFLINE_REMINDER:
            self.last_said = now
            self.notice(f"still retrying ({now - self.offline_since:.0f} s): {why}")
        self._pause()

    def _pause(self) -> None:
        time.sleep(BACKOFF[min(self.failures, len(BACKOFF) - 1)])
        self.failures += 1
