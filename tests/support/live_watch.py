"""A job watcher that behaves like the console's own clients (the page, the CLI).

The python-socketio client drops its connection whenever one long-polling request
fails: its writer gives a POST ``request_timeout`` seconds (5 by default) and then gives
up, and its reader ends with it. A server that stalls for longer than that (a loaded
2-core machine, a stopped process) therefore drops a healthy client. The console's
clients reconnect and send ``job:subscribe`` again from the highest seq up to which they
hold every event, so nothing is lost; a test watcher that cannot reconnect turns such a
drop into "events lost" and tells a slow machine from a delivery bug by luck. This one
reconnects, resubscribes and keeps every event it was sent, with the reasons it was
dropped, so a test can assert the contract (the union equals the stored log) and say
what happened when it does not hold.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
import socketio

from tests.support.live_server import handshake
from tests.support.waiting import wait_until


class ResumingWatcher:
    """Watches one job; after any drop it reconnects and resubscribes from its
    contiguous seq (as ``static/js`` and ``patchbay_cli/follow.py`` do)."""

    def __init__(self, url: str, http: requests.Session | None, job_id: int, *,
                 after_seq: int = 0, transports: list[str] | None = None,
                 **client_options: Any) -> None:
        self.job_id = job_id
        self.events: list[dict] = []
        self.drops: list[str] = []  # the reason of every disconnect, in order
        self.acks: list[dict] = []
        self.connects = 0  # every (re)connect, the first included
        self._first_after_seq = after_seq
        self._lock = threading.Lock()
        self._url, self._http = url, http
        self.transports = transports or ["websocket"]
        self._client_options = client_options
        self.client: socketio.Client
        self._connect()

    def _connect(self) -> None:
        client = socketio.Client(http_session=self._http, reconnection=True,
                                 reconnection_delay=0.2, reconnection_delay_max=1,
                                 **self._client_options)
        client.on("connect", self._subscribe)
        client.on("disconnect", self._note_drop)
        client.on("job:events", self._take)
        self.client = client  # before connecting: the connect handler emits on it
        client.connect(self._url, transports=self.transports, wait_timeout=10,
                       auth=handshake(self._http))

    def reconnect(self) -> None:
        """Leave as a reloaded page does and connect again with a new client, which
        resubscribes from the contiguous seq (a drop the client itself makes)."""
        old = self.client
        _settle(old)
        old.shutdown()  # also ends a reconnect under way
        if old.connected:  # that reconnect had just succeeded
            old.disconnect()
        self._connect()

    def _subscribe(self) -> None:
        """Every (re)connect: subscribe from what is held without a hole."""
        with self._lock:
            self.connects += 1
        after_seq = self.contiguous() if self.events else self._first_after_seq
        self.client.emit("job:subscribe", {"job_id": self.job_id, "after_seq": after_seq},
                         callback=self._acked)

    def _acked(self, ack: dict) -> None:
        with self._lock:
            self.acks.append(ack)

    def _note_drop(self, reason: Any = None) -> None:
        with self._lock:
            self.drops.append(str(reason))

    def _take(self, payload: dict) -> None:
        if payload.get("job_id") == self.job_id:
            with self._lock:
                self.events.extend(payload["events"])

    def seqs(self) -> set[int]:
        with self._lock:
            return {e["seq"] for e in self.events}

    def contiguous(self) -> int:
        seqs, top = self.seqs(), 0
        while top + 1 in seqs:
            top += 1
        return top

    def finished(self) -> bool:
        with self._lock:
            return any(e["type"] == "job_finished" for e in self.events)

    def by_seq(self) -> dict[int, dict]:
        with self._lock:
            return {e["seq"]: e for e in self.events}

    def story(self) -> str:
        """What this watcher saw, for a failure message."""
        seqs = sorted(self.seqs())
        return (f"watcher of job {self.job_id}: {len(seqs)} distinct seqs, contiguous to "
                f"{self.contiguous()}, last {seqs[-5:]}, drops {self.drops}, "
                f"acks {[a.get('ok') for a in self.acks]}, connected "
                f"{self.client.connected}")

    def close(self) -> None:
        _settle(self.client)
        self.client.shutdown()  # also ends a reconnect under way


def _settle(client: socketio.Client) -> None:
    """Wait out the moment of a (re)connect when python-engineio already says
    "connected" but has not started its read loop: a disconnect then fails joining it
    (AttributeError on None; make chaos met it closing a watcher mid-reconnect)."""
    wait_until(lambda: client.eio.state != "connected" or client.eio.read_loop_task,
               timeout=10, what="the socket's connect to settle")
