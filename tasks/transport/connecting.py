"""Opening the SSH connection to a server: Fabric's :class:`~fabric.Connection`, set up
once for the whole console, and every way opening it fails told in one line (and, for
the metrics, one word: :func:`connect_failure_kind`)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from tasks.transport.client_keys import PrivateKeyError, load_private_key
from tasks.transport.error_text import first_line
from tasks.transport.host_keys import fingerprint, trust_known_hosts
from tasks.transport.protocol import Target, TransportError


class ConnectionClosed(TransportError):
    """The connection was closed while it was being opened (a retry may well work)."""


_shared_config: list[Config] = []


def _fabric_config() -> Config:
    """One Fabric configuration for every connection (no ssh_config files: the
    inventory says how to reach each server). Connections only read it, and building
    one per connection cost a fan-out more CPU than its host-key checks."""
    if not _shared_config:
        _shared_config.append(Config(overrides={"load_ssh_configs": False}))
    return _shared_config[0]


class _Connection(Connection):
    """Fabric's Connection that never writes to its configuration, which every
    connection shares (:func:`_fabric_config`).

    invoke's ``DataProxy`` turns a set of any name its class does not define into a
    config update, and each update re-merges the whole config (it is empty for a
    moment: a connection built in another thread then read no ``timeouts`` or
    ``authentication`` and failed with AttributeError). Fabric sets
    ``inline_ssh_env`` that way. Here every attribute set is the instance's own;
    it is also cheaper, as DataProxy runs ``dir(self)`` on every set."""

    def __setattr__(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)


def new_connection(target: Target, connect_timeout: float) -> Connection:
    """A connection to ``target``, not yet open, that checks the server's host key
    (:mod:`tasks.transport.host_keys`) and never reads ssh_config or local keys."""
    connect_kwargs: dict[str, object] = {
        "allow_agent": target.key_path is None,
        "look_for_keys": False,
        "banner_timeout": connect_timeout,
        "auth_timeout": connect_timeout,
    }
    connection = _Connection(
        host=target.address, port=target.port, user=target.user,
        connect_timeout=int(max(1, connect_timeout)), connect_kwargs=connect_kwargs,
        config=_fabric_config(),
    )
    trust_known_hosts(connection.client, target)
    return connection


def open_connection(connection: Connection, target: Target, key_file: Path | None,
                    connect_timeout: float) -> None:
    """Open ``connection`` (with the private key in ``key_file``, if any); raise
    :class:`TransportError` with a one-line reason."""
    where = f"{target.address}:{target.port}"
    if key_file is not None and "pkey" not in connection.connect_kwargs:
        connection.connect_kwargs["pkey"] = load_private_key(key_file)
    try:
        connection.open()
    except TransportError:
        raise
    except paramiko.BadHostKeyException as exc:
        raise TransportError(
            f"host key mismatch for {where}: server offered {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, known_hosts expects {fingerprint(exc.expected_key)}"
        ) from None
    except paramiko.AuthenticationException:
        if not _transport_active(connection):  # paramiko says so of a cut connection too
            raise ConnectionClosed(f"connection to {where} closed during "
                                   "authentication") from None
        raise TransportError(
            f"authentication failed for {target.user}@{where} "
            "(the server refused our key)") from None
    except EOFError:
        # paramiko re-raises its reader's EOFError when the server (or something on
        # the way) closes the connection during the handshake.
        raise ConnectionClosed(f"connection to {where} closed during the SSH "
                               "handshake") from None
    except (paramiko.SSHException, OSError) as exc:
        raise _unreachable(exc, target, connect_timeout) from None


def _unreachable(exc: paramiko.SSHException | OSError, target: Target,
                 connect_timeout: float) -> TransportError:
    """The one-line error for a connect that found no SSH server to talk to (refused,
    unreachable, no DNS answer, timed out, no SSH spoken). Raised while ``exc`` is
    handled, it keeps it as its ``__context__`` (:func:`connect_failure_kind`)."""
    where = f"{target.address}:{target.port}"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        refused = all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values())
        if refused:
            return TransportError(f"connection refused by {where}")
        return TransportError(f"cannot reach {where}: {first_line(exc)}")
    if isinstance(exc, socket.gaierror):
        return TransportError(f"DNS lookup failed for {target.address}")
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(f"connection refused by {where}")
    if isinstance(exc, TimeoutError):
        return TransportError(
            f"connection to {where} timed out after {connect_timeout:g} s")
    if isinstance(exc, paramiko.SSHException):
        return TransportError(f"SSH negotiation with {where} failed: {first_line(exc)}")
    return TransportError(f"cannot reach {where}: {exc.strerror or first_line(exc)}")


def _transport_active(connection: Connection) -> bool:
    client = getattr(connection, "client", None)
    transport = client.get_transport() if client is not None else None
    return transport is not None and transport.is_active()


# The kind of a failed connect (tasks.meters.SSH_FAILURE_REASONS), by the exception
# that open_connection turned into its TransportError; the first match wins.
_CONNECT_FAILURE_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (paramiko.BadHostKeyException, "host_key"),
    (paramiko.AuthenticationException, "auth"),
    (socket.gaierror, "dns"),
    (ConnectionRefusedError, "refused"),
    (TimeoutError, "timeout"),
    (paramiko.SSHException, "protocol"),
    (OSError, "unreachable"),
)


def connect_failure_kind(exc: TransportError) -> str:
    """Why a connect failed, as one word for the metrics."""
    if isinstance(exc, PrivateKeyError):
        return "auth"
    if isinstance(exc, ConnectionClosed):
        return "dropped"
    cause = exc.__context__  # what `raise TransportError(...) from None` was handling
    if cause is None:
        return "host_key"  # raised by our own host key policy (_RejectUnknown)
    if isinstance(cause, paramiko.ssh_exception.NoValidConnectionsError):
        refused = all(isinstance(e, ConnectionRefusedError) for e in cause.errors.values())
        return "refused" if refused else "unreachable"
    return next((kind for kind_of, kind in _CONNECT_FAILURE_KINDS
                 if isinstance(cause, kind_of)), "other")
