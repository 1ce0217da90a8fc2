"""Host keys: which keys a server may present (its entries of the known_hosts file),
and what happens to one that is not there: refused, naming its fingerprint (strict),
or recorded in the file (``accept-new``, trust on first use)."""

from __future__ import annotations

import base64
import fcntl
import hashlib
from pathlib import Path

import paramiko

from tasks.transport.file_versions import FileVersion, per_file_version
from tasks.transport.protocol import Target, TransportError


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def trust_known_hosts(client: paramiko.SSHClient, target: Target) -> None:
    """Make ``client`` accept only the keys known_hosts records for ``target``, and
    refuse or record (``target.accept_new_host_keys``) a key it has none of."""
    known_hosts = Path(target.known_hosts or "~/.ssh/known_hosts").expanduser()
    if known_hosts.exists():
        # Only this server's entries: the client then checks exactly as if it had
        # loaded the whole file, without parsing it once per connection.
        name = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
        for keytype, key in known_host_keys(known_hosts).lookup(name).items():
            client.get_host_keys().add(name, keytype, key)
    client.set_missing_host_key_policy(
        _AcceptNew(str(known_hosts)) if target.accept_new_host_keys else _RejectUnknown())


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys, naming the fingerprint so an operator can check it."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise TransportError(
            f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} "
            "is not in known_hosts")


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use: record the key in the known_hosts file."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if self.path:
            record_host_key(Path(self.path), hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def record_host_key(path: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname``'s ``key`` to the known_hosts file at ``path``.

    Other connections (threads, greenlets, console nodes sharing the file) may meet
    new hosts at the same moment, so the file is read again and appended to under an
    exclusive lock on the file itself: a key another writer recorded meanwhile is not
    written twice, and a *different* key recorded meanwhile for this host is a changed
    key, refused as if it had been in the file when the connection started."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="ascii") as handle:  # closing it releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        recorded = known_host_keys(path).lookup(hostname)
        if recorded:
            expected = recorded.get(key.get_name())
            if expected == key:
                return
            raise paramiko.BadHostKeyException(
                hostname, key, expected or next(iter(recorded.values())))
        separator = "\n" if text and not text.endswith("\n") else ""
        handle.write(f"{separator}{hostname} {key.get_name()} {key.get_base64()}\n")


class KnownHosts:
    """A parsed known_hosts file, looked up by host name in constant time.

    paramiko's ``HostKeys.lookup`` compares the name with every entry, hashing it once
    per hashed entry: with a 1,000-server file that is a million comparisons per
    fan-out. Plain names are indexed once; hashed entries (``|1|salt|hash``, whose name
    can only be found by hashing) are scanned once per name, and every answer is kept
    while the file stays the same."""

    def __init__(self, path: Path) -> None:
        self.host_keys = paramiko.HostKeys(str(path))
        self._plain: dict[str, list[paramiko.hostkeys.HostKeyEntry]] = {}
        self._hashed: list[paramiko.hostkeys.HostKeyEntry] = []
        self._answers: dict[str, dict[str, paramiko.PKey]] = {}
        for entry in self.host_keys._entries:  # noqa: SLF001 - no public way to iterate
            if entry.key is None:
                continue
            for name in entry.hostnames:
                if name.startswith("|1|"):
                    self._hashed.append(entry)
                else:
                    self._plain.setdefault(name, []).append(entry)

    def lookup(self, hostname: str) -> dict[str, paramiko.PKey]:
        """``{key type: key}`` recorded for ``hostname`` (empty when none is)."""
        answer = self._answers.get(hostname)
        if answer is None:
            entries = self._plain.get(hostname, []) + [
                entry for entry in self._hashed
                if self.host_keys._hostname_matches(hostname, entry)]  # noqa: SLF001
            answer = {}
            for entry in entries:
                answer.setdefault(entry.key.get_name(), entry.key)
            self._answers[hostname] = answer
        return answer


_known_hosts_files: dict[Path, tuple[FileVersion, KnownHosts]] = {}


def known_host_keys(path: Path) -> KnownHosts:
    """The parsed known_hosts file at ``path``, parsed again only when it changes.

    paramiko's parser is quadratic (about 0.2 ms per line at 1,000 lines): parsing a
    fleet's file once per connection cost more CPU than everything else a server needs.
    """
    return per_file_version(_known_hosts_files, path, KnownHosts)
