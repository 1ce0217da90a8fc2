"""The Socket.IO client manager: which sockets exist, across every console process.

With ``PATCHBAY_MESSAGE_QUEUE=redis://...`` every node (and every ``flask`` command)
shares one Redis channel, so an emit to a room reaches that room's sockets on every
node. python-socketio can disconnect one socket by id across processes, but the ids of
another node's sockets are known only there; :func:`disconnect_room` therefore sends a
"disconnect everyone in this room" message that each process applies to its own
sockets. It rides on the queue's ``close_room`` message (with ``disconnect: true``), so
a process that does not know the flag at worst empties the room.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

log = logging.getLogger(__name__)

CHANNEL = "flask-socketio"  # Flask-SocketIO's default channel name, kept


class RoomDisconnectingRedisManager(socketio.RedisManager):
    """Redis pub/sub manager that can drop every socket of a room on every node."""

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


def client_manager(url: str | None) -> socketio.Manager | None:
    """The manager for ``PATCHBAY_MESSAGE_QUEUE``; None (one process, in memory) when
    it is not set. Only Redis is supported: it is what the cluster is built on."""
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        # The scheme only: the rest of the URL may hold a password.
        raise RuntimeError("PATCHBAY_MESSAGE_QUEUE must be a redis:// URL, not "
                           f"{url.partition('://')[0]!r}://...")
    return RoomDisconnectingRedisManager(url, channel=CHANNEL)


def disconnect_room(server: socketio.Server, room: str, namespace: str = "/") -> None:
    """Drop every socket in ``room``: on every node when a message queue is shared,
    else in this process."""
    manager = server.manager
    if isinstance(manager, RoomDisconnectingRedisManager):
        manager.disconnect_room(room, namespace)
    else:
        disconnect_local(manager, room, namespace)
