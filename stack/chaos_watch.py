"""The chaos run's watchers: the tests' :class:`ResumingWatcher` (reconnect, then
``job:subscribe {job_id, after_seq}`` from the contiguous seq), plus the two things the
console's page does beyond it, and the drop the run injects.

- An event held beyond a hole for ``HOLE_WAIT`` seconds has the hole fetched over
  HTTP (``GET /api/jobs/<id>/events?after_seq=``), as the page and the CLI do: live
  events emitted while Redis restarts reach no one.
- ``catch_up``: a job that has ended while the watcher misses its last events (emitted
  during a Redis restart, with nothing after them to show a hole) is caught up as a
  reload would: a new connection resubscribes from the contiguous seq.
- ``drop``: a websocket watcher loses its TCP connection (shut down under it, as a
  network failure would) and reconnects by itself; a long-polling one leaves and
  connects again (a reload).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import requests
import socketio

from tests.support.live_watch import ResumingWatcher

HOLE_WAIT = 1.0  # s an event may wait beyond a hole before the hole is fetched


class ChaosWatcher(ResumingWatcher):
    def __init__(self, url: str, http: requests.Session, job_id: int, transport: str) -> None:
        self.url = url
        self.hole_fills = 0
        self.catch_ups = 0
        self.drops_made = 0
        self._hole_since: float | None = None
        self._dropping = threading.Lock()  # one injected drop at a time
        super().__init__(url, http, job_id, transports=[transport])

    @property
    def transport(self) -> str:
        return self.transports[0]

    def holds(self, last_seq: int) -> bool:
        """Every seq up to ``last_seq`` held."""
        return self.contiguous() >= last_seq

    def drop(self) -> bool:
        """Drop the connection (False: it was not connected, or a drop is under way)."""
        if not self.client.connected or not self._dropping.acquire(blocking=False):
            return False
        try:
            if self.transport == "websocket":
                websocket = getattr(self.client.eio, "ws", None)
                raw = getattr(websocket, "sock", None)
                if raw is None:
                    return False
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_RDWR)
            else:
                self._reconnect_patiently()
            self.drops_made += 1
            return True
        finally:
            self._dropping.release()

    def fill_hole(self) -> None:
        """Fetch the hole over HTTP once an event has waited beyond it long enough."""
        top = self.contiguous()
        if not any(seq > top for seq in self.seqs()):
            self._hole_since = None
            return
        now = time.monotonic()
        if self._hole_since is None:
            self._hole_since = now
            return
        if now - self._hole_since < HOLE_WAIT:
            return
        events = self._fetch(top)
        if events is not None:
            with self._lock:
                self.events.extend(events)
            self.hole_fills += 1
            self._hole_since = None

    def catch_up(self) -> None:
        with self._dropping:
            self._reconnect_patiently()
        self.catch_ups += 1

    def _reconnect_patiently(self, timeout: float = 60) -> None:
        """``reconnect``, tried again while nginx or the node behind it restarts (a
        first connect is not retried by the client itself)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.reconnect()
                return
            except socketio.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # pause between attempts of a deadline loop

    def _fetch(self, after_seq: int) -> list[dict] | None:
        try:
            response = self._http.get(f"{self.url}/api/jobs/{self.job_id}/events",
                                      params={"after_seq": after_seq, "limit": 1000},
                                      timeout=10)
            response.raise_for_status()
            return response.json()["events"]
        except (requests.RequestException, ValueError, KeyError):
            return None  # a node or PostgreSQL restarting: the next call tries again
