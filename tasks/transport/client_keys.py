"""The console's private keys: read from the inventory's key files, once per file
version, with a one-line reason when a file cannot be used."""

from __future__ import annotations

from pathlib import Path

import paramiko

from tasks.transport.file_versions import FileVersion, per_file_version
from tasks.transport.protocol import TransportError


class PrivateKeyError(TransportError):
    """A server's private key file cannot be used (missing, unreadable, encrypted)."""


_private_keys: dict[Path, tuple[FileVersion, paramiko.PKey]] = {}


def load_private_key(path: Path) -> paramiko.PKey:
    """The private key in ``path`` (with its ``-cert.pub`` certificate, if there is one),
    read again only when the file changes: a fleet shares a few keys, and parsing one
    per connection was a measurable part of a 1,000-server fan-out.

    A failure names the file, not its folder: the reason is shown on job pages and in
    events, and the full path would tell every viewer where the console keeps keys."""
    try:
        return per_file_version(_private_keys, path, _read_private_key)
    except OSError:
        return _read_private_key(path)  # names the failure


def _read_private_key(path: Path) -> paramiko.PKey:
    name = path.name
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise PrivateKeyError(f"private key file {name} not found") from None
    except OSError as exc:
        raise PrivateKeyError(f"private key file {name} cannot be read: "
                              f"{exc.strerror or type(exc).__name__}") from None
    except TypeError:  # what the cryptography package raises for a missing password
        raise PrivateKeyError(f"private key file {name} is protected by a passphrase, "
                              "which Patchbay cannot enter") from None
    except (ValueError, paramiko.SSHException, paramiko.UnknownKeyType):
        raise PrivateKeyError(f"private key file {name} holds no private key Patchbay "
                              "can use") from None
