"""Inventory files: the servers Patchbay may touch, as YAML.

```yaml
known_hosts: /path/known_hosts      # optional default for every server
servers:
  - name: gs-01
    host: 10.0.0.11
    port: 22                        # optional, default 22
    user: deploy
    key: ~/.ssh/id_ed25519          # optional private key path
    tags: [eu, canary]
    vars: {root: /srv/game, game_port: 27015}
```

Errors name the line and the field; a file with any error imports nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Server

SERVER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class InventoryError(ValueError):
    """An inventory file that cannot be imported."""


class ServerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SERVER_NAME)
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:\[\]-]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    key: str | None = None
    known_hosts: str | None = None
    host_key_policy: Literal["strict", "accept-new"] | None = None
    tags: list[str] = Field(default_factory=list)
    vars: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not re.fullmatch(TAG, tag):
                raise ValueError(f"tag {tag!r} may only hold letters, digits and _.:-")
        return value

    @field_validator("vars")
    @classmethod
    def _var_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"variable name {key!r} must be an identifier")
        return value


@dataclass
class Inventory:
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
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InventoryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("servers"), list):
        raise InventoryError(f"{source}: expected a mapping with a 'servers' list")
    unknown = sorted(set(data) - {"servers", "known_hosts", "host_key_policy", "__line__"})
    if unknown:
        line = next((number for number, text_line in enumerate(text.splitlines(), 1)
                     if text_line.startswith(f"{unknown[0]}:")), 1)
        raise InventoryError(f"{source}: line {line}: unknown top-level field {unknown[0]!r}")
    default_known_hosts = data.get("known_hosts")
    default_policy = data.get("host_key_policy", "strict")
    if default_policy not in ("strict", "accept-new"):
        raise InventoryError(f"{source}: host_key_policy: must be 'strict' or 'accept-new', "
                             f"not {default_policy!r}")
    servers: list[ServerEntry] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(data["servers"]):
        if not isinstance(raw, dict):
            raise InventoryError(f"{source}: servers[{index}]: expected a mapping")
        line = raw.get("__line__", "?")
        try:
            entry = ServerEntry.model_validate(_strip_lines(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(entry)"
            raise InventoryError(
                f"{source}: line {line}: servers[{index}].{where}: {first['msg']}"
            ) from exc
        if entry.name in seen:
            raise InventoryError(
                f"{source}: line {line}: servers[{index}].name: duplicate server name "
                f"{entry.name!r} (first on line {seen[entry.name]})")
        seen[entry.name] = line
        if entry.known_hosts is None and default_known_hosts:
            entry.known_hosts = str(default_known_hosts)
        if entry.host_key_policy is None:
            entry.host_key_policy = default_policy
        servers.append(entry)
    return Inventory(servers)


def apply_inventory(session: Session, inventory: Inventory) -> tuple[int, int]:
    """Create or update the servers of ``inventory`` (by name); returns (created, updated).

    The caller commits, so a failure leaves the database as it was.
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
        server.vars = dict(entry.vars)
    return created, updated
