"""The Socket.IO client manager: which sockets exist, across every console process.

With ``PATCHBAY_MESSAGE_QUEUE=redis://...`` every node (and every ``flask`` command)
shares one Redis channel, so an emit to a room reaches that room's sockets on every
node. python-socketio can disconnect one socket by id across processes, but the ids of
another node's sockets are known only there; :func:`disconnect_room` therefore sends a
"disconnect everyone in this room" message that each process applies to its own
sockets. It rides on the queue's ``close_room`` message (with ``disconnect: true``), so
a process that does not know the flag at worst empties the room.

When Redis goes away, python-socketio's own loops log an ERROR for every attempt (each
publish, each reconnect) and back off up to a minute. Ours report to a
:class:`tasks.nodes.health.Dependency` instead (one line when Redis goes, one when it is back,
and the Nodes page's state) and retry at most every few seconds, so events reach the
other nodes again within seconds of Redis coming back.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from tasks.events.write_errors import describe
from tasks.nodes.health import Dependency

log = logging.getLogger(__name__)

CHANNEL = "flask-socketio"  # Flask-SocketIO's default channel name, kept
RETRY_FIRST, RETRY_MAX = 0.5, 2.0  # seconds between reconnects: doubling, capped


class RoomDisconnectingRedisManager(socketio.RedisManager):
    """Redis pub/sub manager that can drop every socket of a room on every node, and
    tells ``health`` whether Redis is reachable."""

    def __init__(self, url: str, *, health: Dependency | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self.health = health or Dependency("message queue")

    def _publish(self, data: Any) -> Any:
        failure: Exception | None = None
        for _attempt in range(2):  # a connection dropped since the last publish: reconnect once
            try:
                if not self.connected:
                    self._redis_connect()
                sent = self.redis.publish(self.channel, self.json.dumps(data))
            except Exception as error:  # noqa: BLE001 - whatever Redis raises, the emit goes on
                self.connected, failure = False, error
                continue
            self.health.succeeded()
            return sent
        # Lost for the other nodes only: the event is in the database, and their
        # clients fetch the gap when the next event shows it.
        self.health.failed(describe(failure))
        return None

    def _redis_listen_with_retries(self):
        delay, subscribed = RETRY_FIRST, False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    self.pubsub.subscribe(self.channel)
                    subscribed, delay = True, RETRY_FIRST
                    self.health.succeeded()
                yield from self.pubsub.listen()
            except Exception as error:  # noqa: BLE001 - the listener must outlive any outage
                self.health.failed(describe(error))
                subscribed = False
                self.server.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def disconnect_room(self, room: str, namespace: str = "/") -> None:
        message = {"method": "close_room", "room": room, "namespace": namespace,
                   "disconnect": True, "host_id": self.host_id}
        self._handle_close_room(message)  # this process's sockets
        self._publish(message)  # everybody else's

    def _handle_close_room(self, message: dict[str, Any]) -> None:
        if not message.get("disconnect"):
            super()._handle_close_room(message)
            return
        namespace = message.get("namespace") or "/"
        disconnect_local(self, message["room"], namespace)


def disconnect_local(manager: socketio.Manager, room: str, namespace: str = "/") -> None:
    """Disconnect the sockets of ``room`` that this process holds."""
    for sid, _ in list(manager.get_participants(namespace, room)):
        log.info("dropping socket %s: its room %s was closed (session ended)", sid, room)
        manager.server.disconnect(sid, namespace=namespace, ignore_queue=True)


def client_manager(url: str | None, health: Dependency | None = None
                   ) -> socketio.Manager | None:
    """The manager for ``PATCHBAY_MESSAGE_QUEUE``; None (one process, in memory) when
    it is not set. Only Redis is supported: it is what the cluster is built on."""
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        # The scheme only: the rest of the URL may hold a password.
        raise RuntimeError("PATCHBAY_MESSAGE_QUEUE must be a redis:// URL, not "
                           f"{url.partition('://')[0]!r}://...")
    return RoomDisconnectingRedisManager(url, channel=CHANNEL, health=health)


def start_listening(server: socketio.Server) -> None:
    """Listen to the queue from now on. python-socketio starts its listener at the first
    socket connection only: a node that only emits would not notice Redis going away
    (nor its return) until someone connects to it."""
    if not server.manager_initialized:
        server.manager_initialized = True
        server.manager.initialize()


def disconnect_room(server: socketio.Server, room: str, namespace: str = "/") -> None:
    """Drop every socket in ``room``: on every node when a message queue is shared,
    else in this process."""
    manager = server.manager
    if isinstance(manager, RoomDisconnectingRedisManager):
        manager.disconnect_room(room, namespace)
    else:
        disconnect_local(manager, room, namespace)
