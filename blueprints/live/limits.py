"""How many Socket.IO connections one user may hold: ``PATCHBAY_MAX_SOCKETS_PER_USER``
(default 20) per console node.

The count is this process's sockets in the room ``user:<id>`` (every accepted socket of
a user joins it), so a socket that goes is no longer counted with nothing to clean up.
With several nodes each node allows that many; nginx's ``ip_hash`` sends one client
address to one node, so one machine still gets at most that many.
"""

from __future__ import annotations

from flask import current_app
from socketio.exceptions import ConnectionRefusedError as SocketRefused

from blueprints.live.rooms import user_room
from extensions import socketio


def check_socket_limit(user_id: int) -> None:
    """Refuse a connect (the client's ``connect_error`` says why) when the user has
    ``PATCHBAY_MAX_SOCKETS_PER_USER`` sockets on this node already."""
    limit = int(current_app.config["MAX_SOCKETS_PER_USER"])
    if open_sockets(user_id) >= limit:
        raise SocketRefused(
            f"too_many_sockets: you have {limit} connections to this console open "
            "(PATCHBAY_MAX_SOCKETS_PER_USER); close a tab or a client and connect again")


def open_sockets(user_id: int) -> int:
    """The user's sockets connected to this process."""
    try:
        return sum(1 for _ in socketio.server.manager.get_participants("/", user_room(user_id)))
    except KeyError:  # no such room: none
        return 0
