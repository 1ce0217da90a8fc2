"""Inventory files: the servers Patchbay may touch, as YAML.

```yaml
known_hosts: /path/known_hosts      # optional default for every server
defaults:                           # optional: every server's vars and secret names
  vars: {root: /srv/game, db_password: {env: GAME_DB_PASSWORD}}
  secret_vars: [rcon_password]
servers:
  - name: gs-01
    host: 10.0.0.11
    port: 22                        # optional, default 22
    user: deploy
    key: ~/.ssh/id_ed25519          # optional private key path
    tags: [eu, canary]
    vars: {game_port: 27015, rcon_password: s3cret-rcon}
    secret_vars: [rcon_password]    # shown as •••• everywhere but on the server
```

A server's own ``vars`` override those of ``defaults``; its secret names are its own
``secret_vars`` plus those of ``defaults`` that it has as variables (a server's own
``secret_vars`` must name variables it has).

Secret variables (:mod:`tasks.planning.secrets`) are substituted into the commands sent to the
server and shown as ``••••`` everywhere else. A variable whose value is ``{env: NAME}``
is read from the console's environment each time a job is planned, so its value is
written neither in this file nor in the database (which keeps the reference); it is
secret without being listed. A step that uses it while ``NAME`` is unset is refused
with an error naming the server, the variable and ``NAME``. Other secret values are
stored in ``servers.vars`` sealed with the console's key (``{"$sealed": token}``), so a
file with literal secrets must be imported by ``flask import-inventory`` of a console
with the right ``PATCHBAY_SECRET_KEY``.

Errors name the line and the field; a file with any error imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Server
from tasks.planning.inventory_schema import ENV, SEALED, Defaults, ServerEntry
from tasks.planning.secrets import SecretBox, SecretUnreadable


class InventoryError(ValueError):
    """An inventory file that cannot be imported."""


@dataclass
class Inventory:
    """A parsed inventory: its servers, each with the defaults applied."""

    servers: list[ServerEntry] = field(default_factory=list)


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line each mapping starts on."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def parse_inventory(text: str, source: str = "inventory") -> Inventory:
    """Parse and validate an inventory; raise :class:`InventoryError` naming line and field."""
    data = _load_document(text, source)
    default_known_hosts = data.get("known_hosts")
    default_policy = data.get("host_key_policy", "strict")
    if default_policy not in ("strict", "accept-new"):
        raise InventoryError(f"{source}: host_key_policy: must be 'strict' or 'accept-new', "
                             f"not {default_policy!r}")
    defaults = _parse_defaults(data.get("defaults"), source)
    servers: list[ServerEntry] = []
    first_line_of: dict[str, int] = {}  # server name -> the line it was first given on
    for index, raw in enumerate(data["servers"]):
        entry, line = _parse_server(raw, index, source)
        if entry.name in first_line_of:
            raise InventoryError(
                f"{source}: line {line}: servers[{index}].name: duplicate server name "
                f"{entry.name!r} (first on line {first_line_of[entry.name]})")
        first_line_of[entry.name] = line
        _apply_defaults(entry, defaults, line, index, source)
        if entry.known_hosts is None and default_known_hosts:
            entry.known_hosts = str(default_known_hosts)
        if entry.host_key_policy is None:
            entry.host_key_policy = default_policy
        servers.append(entry)
    return Inventory(servers)


def _load_document(text: str, source: str) -> dict[str, Any]:
    """The YAML document, its mappings marked with their lines (``__line__``); only the
    known top-level fields, and a ``servers`` list."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InventoryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("servers"), list):
        raise InventoryError(f"{source}: expected a mapping with a 'servers' list")
    unknown = sorted(set(data) - {"servers", "known_hosts", "host_key_policy", "defaults",
                                  "__line__"})
    if unknown:
        line = next((number for number, text_line in enumerate(text.splitlines(), 1)
                     if text_line.startswith(f"{unknown[0]}:")), 1)
        raise InventoryError(f"{source}: line {line}: unknown top-level field {unknown[0]!r}")
    return data


def _parse_server(raw: Any, index: int, source: str) -> tuple[ServerEntry, Any]:
    """The ``index``-th entry of ``servers``, validated, and the line it starts on
    (``"?"`` when unknown)."""
    if not isinstance(raw, dict):
        raise InventoryError(f"{source}: servers[{index}]: expected a mapping")
    line = raw.get("__line__", "?")
    try:
        return ServerEntry.model_validate(_strip_lines(raw)), line
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(entry)"
        raise InventoryError(
            f"{source}: line {line}: servers[{index}].{where}: {first['msg']}"
        ) from exc


def _apply_defaults(entry: ServerEntry, defaults: Defaults, line: Any, index: int,
                    source: str) -> None:
    """Give ``entry`` the defaults' vars (its own win) and those of the defaults' secret
    names that it has as vars; its own secret names must name vars it has."""
    unknown_secret = next((n for n in entry.secret_vars if n not in entry.vars
                           and n not in defaults.vars), None)
    if unknown_secret is not None:
        raise InventoryError(
            f"{source}: line {line}: servers[{index}].secret_vars: {unknown_secret!r} "
            "is not one of the server's vars")
    entry.vars = {**defaults.vars, **entry.vars}
    entry.secret_vars = sorted(set(entry.secret_vars) | {
        name for name in defaults.secret_vars if name in entry.vars})


def _parse_defaults(raw: Any, source: str) -> Defaults:
    if raw is None:
        return Defaults()
    line = raw.get("__line__", "?") if isinstance(raw, dict) else "?"
    if not isinstance(raw, dict):
        raise InventoryError(f"{source}: defaults: expected a mapping with vars and "
                             "secret_vars")
    try:
        return Defaults.model_validate(_strip_lines(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(entry)"
        raise InventoryError(f"{source}: line {line}: defaults.{where}: {first['msg']}"
                             ) from exc


def stored_vars(entry: ServerEntry, seal: Callable[[Any], str] | None) -> dict[str, Any]:
    """A server's vars as kept in ``servers.vars``: environment references as they are,
    other secret values sealed by ``seal`` (the console's :meth:`SecretBox.seal`)."""
    stored: dict[str, Any] = {}
    for name, value in entry.vars.items():
        if name in entry.secret_vars and not (isinstance(value, dict) and ENV in value):
            if seal is None:
                raise InventoryError(
                    f"server {entry.name} variable {name!r} is secret: import it with the "
                    "console's key (flask import-inventory)")
            value = {SEALED: seal(value)}
        stored[name] = value
    return stored


def apply_inventory(session: Session, inventory: Inventory,
                    seal: Callable[[Any], str] | None = None) -> tuple[int, int]:
    """Create or update the servers of ``inventory`` (by name); returns (created, updated).

    ``seal`` seals secret values written out in the file (see :func:`stored_vars`);
    without it such a file is refused. The caller commits, so a failure leaves the
    database as it was.
    """
    existing = {s.name: s for s in session.scalars(select(Server))}
    created = updated = 0
    for entry in inventory.servers:
        server = existing.get(entry.name)
        if server is None:
            server = Server(name=entry.name)
            session.add(server)
            created += 1
        else:
            updated += 1
        server.host = entry.host
        server.port = entry.port
        server.user = entry.user
        server.key_path = entry.key
        server.known_hosts = entry.known_hosts
        server.host_key_policy = entry.host_key_policy or "strict"
        server.tags = list(entry.tags)
        server.vars = stored_vars(entry, seal)
    return created, updated


@dataclass(frozen=True)
class HostVars:
    """A server's vars at plan time: ``values`` (secrets in clear, in memory only), the
    names of the secret ones, and the vars whose value cannot be had now (var -> why)."""

    values: dict[str, Any]
    secret: frozenset[str]
    unavailable: dict[str, str]

    def secret_values(self) -> list[str]:
        return [str(self.values[name]) for name in self.secret if name in self.values]


def resolve_vars(server: str, stored: dict[str, Any], environ: Mapping[str, str],
                 box: SecretBox) -> HostVars:
    """Turn ``servers.vars`` into values: read ``{env: NAME}`` from ``environ`` and open
    sealed values with ``box``. A value that cannot be had is not an error here (a
    runbook that never uses it may still run); it is one when a step needs it."""
    values: dict[str, Any] = {}
    secret: set[str] = set()
    unavailable: dict[str, str] = {}
    for name, value in (stored or {}).items():
        if isinstance(value, dict) and set(value) == {ENV}:
            secret.add(name)
            if value[ENV] in environ:
                values[name] = environ[value[ENV]]
            else:
                unavailable[name] = (
                    f"server {server} variable {name!r} reads the environment variable "
                    f"{value[ENV]}, which is not set in the console's environment")
        elif isinstance(value, dict) and set(value) == {SEALED}:
            secret.add(name)
            try:
                values[name] = box.open(value[SEALED], f"server {server} variable {name!r}")
            except SecretUnreadable as exc:
                unavailable[name] = f"{exc.message}; import the inventory again"
        else:
            values[name] = value
    return HostVars(values, frozenset(secret), unavailable)
