"""The console's long-lived objects, found through one typed accessor.

``create_app`` builds one :class:`ConsoleServices` per app and fills it as it builds
each part; every door, service and ``flask`` command reaches them through
:func:`console_services` (never through ``app.extensions`` keys), so a reader sees
their types and a typo is an AttributeError, not a KeyError at run time.

:class:`SocketControl` is how a service ends sockets without knowing Socket.IO: the live
door (``blueprints/live/socket_control.py``) implements it and the factory plugs it in,
so ``services`` never imports ``blueprints``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from flask import Flask, current_app

if TYPE_CHECKING:
    from services.auth.login_sessions import Lifetimes
    from services.auth.login_slowdown import LoginSlowdown
    from services.auth.socket_tokens import SocketTokens
    from services.commands import Commands
    from services.fleet import ReachabilityProbe
    from services.retention import RetentionPruner
    from services.webhooks import DeliveryWorker
    from tasks.engine import JobEngine
    from tasks.nodes.membership import Membership

EXTENSION = "patchbay"


class SocketControl(Protocol):
    """Ending sockets on every node (through the message queue, if any)."""

    def end_user(self, user_id: int, reason: str | None = None) -> None:
        """Drop every socket of a user, first telling them ``reason`` if given."""

    def end_token(self, token_id: int) -> None:
        """Drop every socket that logged in with an API token."""

    def end_login(self, session_id: int, reason: str) -> None:
        """Drop the sockets of one browser login, telling them ``reason``."""


@dataclass(eq=False)
class ConsoleServices:
    """What one console app runs on. The first four exist from the factory's start; the
    rest once it has built them (reading one earlier is an AttributeError)."""

    session_lifetimes: Lifetimes
    login_slowdown: LoginSlowdown
    socket_tokens: SocketTokens  # token sockets' caps
    # Doors any request may pass while their check says so (``permissions.open_to``).
    open_doors: dict[str, Callable[[], bool]] = field(default_factory=dict)
    sockets: SocketControl = field(init=False)
    engine: JobEngine = field(init=False)
    commands: Commands = field(init=False)
    membership: Membership = field(init=False)
    webhooks: DeliveryWorker = field(init=False)
    retention: RetentionPruner = field(init=False)
    # Made by the servers page's first watcher in this process (blueprints/live/fleet.py).
    fleet_probe: ReachabilityProbe | None = None


def console_services(app: Flask | None = None) -> ConsoleServices:
    """The services of ``app`` (by default the current one)."""
    return (app or current_app).extensions[EXTENSION]
