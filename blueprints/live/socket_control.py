"""Ending sockets, for the services (:class:`services.console.SocketControl`), and the
live door's own state: which sockets this process holds and what they logged in with
(the sweeper), and the handshake cap.

Ending goes through :func:`~blueprints.live.redis_manager.disconnect_room`, so it
reaches every node that shares the message queue, also from a ``flask`` command that
holds no sockets itself.
"""

from __future__ import annotations

from blueprints.live.handshakes import Handshakes
from blueprints.live.redis_manager import disconnect_room
from blueprints.live.rooms import login_room, token_room, user_room
from blueprints.live.sweeper import SocketSweeper
from extensions import socketio
from services.console import ConsoleServices, console_services


class LiveSockets:
    """The :class:`~services.console.SocketControl` of this app, with the door's state."""

    def __init__(self, handshakes: Handshakes) -> None:
        self.sweeper = SocketSweeper()
        self.handshakes = handshakes  # capped until logged in

    def end_user(self, user_id: int, reason: str | None = None) -> None:
        if reason is not None:
            socketio.emit("session:ended", {"reason": reason}, to=user_room(user_id))
        disconnect_room(socketio.server, user_room(user_id))

    def end_token(self, token_id: int) -> None:
        disconnect_room(socketio.server, token_room(token_id))

    def end_login(self, session_id: int, reason: str) -> None:
        socketio.emit("session:ended", {"reason": reason}, to=login_room(session_id))
        disconnect_room(socketio.server, login_room(session_id))


def live_sockets() -> LiveSockets:
    """The live door's state in the current app."""
    return live_sockets_of(console_services())


def live_sockets_of(services: ConsoleServices) -> LiveSockets:
    sockets = services.sockets
    if not isinstance(sockets, LiveSockets):
        raise TypeError("the app's SocketControl is not the live door's")
    return sockets
