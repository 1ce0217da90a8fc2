"""The fields of an inventory file (:mod:`tasks.planning.inventory`): the ``defaults``
and each server's entry, as pydantic models that check every name and value."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SERVER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
ENV = "env"  # {env: NAME}: read from the console's environment when a job is planned
SEALED = "$sealed"  # {"$sealed": token}: a secret value as stored in servers.vars


def _check_vars(value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        if not re.fullmatch(IDENTIFIER, key):
            raise ValueError(f"variable name {key!r} must be an identifier")
        if isinstance(item, dict) and (ENV in item or SEALED in item):
            name = item.get(ENV)
            if set(item) != {ENV} or not isinstance(name, str) \
                    or not re.fullmatch(IDENTIFIER, name):
                raise ValueError(f"variable {key!r}: an environment reference is "
                                 "{env: NAME}, NAME an environment variable's name")
    return value


def _check_secret_names(value: list[str]) -> list[str]:
    for name in value:
        if not re.fullmatch(IDENTIFIER, name):
            raise ValueError(f"secret variable name {name!r} must be an identifier")
    return value


class Defaults(BaseModel):
    """The top-level ``defaults``: variables and secret names every server gets."""

    model_config = ConfigDict(extra="forbid")

    vars: dict[str, Any] = Field(default_factory=dict)
    secret_vars: list[str] = Field(default_factory=list)

    @field_validator("vars")
    @classmethod
    def _var_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_vars(value)

    @field_validator("secret_vars")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        return _check_secret_names(value)


class ServerEntry(Defaults):
    """One server: where to reach it, its tags, and its own variables and secret names
    (checked as the defaults' are)."""

    name: str = Field(pattern=SERVER_NAME)
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:\[\]-]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    key: str | None = None
    known_hosts: str | None = None
    host_key_policy: Literal["strict", "accept-new"] | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not re.fullmatch(TAG, tag):
                raise ValueError(f"tag {tag!r} may only hold letters, digits and _.:-")
        return value
