"""The schema of a runbook file: its parameters, its steps (a ``run`` command or a
``wait`` probe) and the placeholders their text may hold.

Pydantic checks each field on its own here; what needs the whole file (a placeholder
naming a parameter, its shell context) is checked when the file is loaded
(:mod:`tasks.planning.runbook_files`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.planning import safe_regex

# Group 1 and 2: scope and name (``params.version``); group 3: ``previous_version``.
PLACEHOLDER = re.compile(r"\{\{\s*(?:([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)"
                         r"|(previous_version))\s*\}\}")
PREVIOUS_VERSION = "previous_version"
# A wait step's timeout may come from an integer parameter: "{{ params.NAME }}".
PARAM_REFERENCE = re.compile(r"\{\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_WAIT_SECONDS = 86_400
HOST_FIELDS = ("name", "address", "port", "user")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer"] = "string"
    pattern: str | None = None
    description: str = ""
    default: str | int | None = None
    required: bool = True
    # The value reaches the server's command only; everywhere else it reads MASK.
    secret: bool = False
    # What people see instead of the pattern: a value that fits, and the pattern in
    # words, completing "NAME must be ..." ("three numbers, like 1.4.2").
    example: str | None = None
    pattern_hint: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return None if value is None else safe_regex.check(value)

    @field_validator("example", mode="before")
    @classmethod
    def _example_text(cls, value: Any) -> Any:
        # YAML reads `example: 30` as a number; an integer parameter's example is one.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _example_fits(self) -> ParamSpec:
        if self.example is not None and self.pattern and not safe_regex.fullmatch(
                self.pattern, self.example):
            raise ValueError(f"example {self.example!r} does not match the pattern "
                             f"{self.pattern}")
        return self


class WaitSpec(BaseModel):
    """A wait step: run the probe ``command`` every ``every`` seconds until its standard
    output matches the regular expression ``until`` (searched, multi-line), or until
    ``timeout`` seconds have passed; then go on (``on_timeout: proceed``) or fail."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1)
    until: str = Field(min_length=1)
    every: float = Field(default=5, ge=0.1, le=3600)
    # Seconds, or "{{ params.NAME }}" naming an integer parameter (read at plan time).
    timeout: float | str = 300
    on_timeout: Literal["proceed", "fail"] = "fail"

    @field_validator("until")
    @classmethod
    def _until_compiles(cls, value: str) -> str:
        return safe_regex.check(value)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            if not PARAM_REFERENCE.fullmatch(value.strip()):
                raise ValueError("must be a number of seconds or {{ params.NAME }}")
            return value.strip()
        if not 0 < value <= MAX_WAIT_SECONDS:
            raise ValueError(f"must be between 0 and {MAX_WAIT_SECONDS} seconds")
        return value


class StepSpec(BaseModel):
    """A step runs a shell command (``run``) or waits for a probe (``wait``).
    ``health: true`` marks a health check, which a soak gate runs again."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    run: str | None = Field(default=None, min_length=1)
    wait: WaitSpec | None = None
    # A wait step's timeout is the wait's; this one then bounds each probe.
    timeout: float | None = Field(default=None, gt=0)
    capture: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]*$")
    health: bool = False

    @model_validator(mode="after")
    def _run_or_wait(self) -> StepSpec:
        if (self.run is None) == (self.wait is None):
            raise ValueError("a step needs either run (a command) or wait (a probe)")
        if self.wait is not None and self.capture is not None:
            raise ValueError("capture is for run steps, not wait steps")
        return self

    @property
    def command(self) -> str:
        """The shell text: the step's command, or its wait's probe."""
        return self.run if self.run is not None else self.wait.command  # type: ignore[union-attr]


class RunbookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)
    on_failure: list[StepSpec] = Field(default_factory=list)
    # Steps that put a server back on its previous build ({{ previous_version }}).
    rollback: list[StepSpec] = Field(default_factory=list)
    # The parameter that names the build a job of this runbook installs.
    version_param: str | None = None
    # A command whose last stdout line is the server's build, run after a server's
    # steps whenever no step reported it (a failure, a cancel, a runbook without
    # `capture: version`), so the version shown is always a fact.
    version_probe: str | None = Field(default=None, min_length=1)
    strategy: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> RunbookSpec:
        if self.version_param is not None and self.version_param not in self.params:
            raise ValueError(f"version_param {self.version_param!r} is not a parameter")
        for section in ("steps", "on_failure", "rollback"):
            for step in getattr(self, section):
                wait = step.wait
                if wait is None or not isinstance(wait.timeout, str):
                    continue
                name = PARAM_REFERENCE.fullmatch(wait.timeout).group(1)  # type: ignore[union-attr]
                if name not in self.params or self.params[name].type != "integer":
                    raise ValueError(f"step {step.name!r}: wait.timeout {wait.timeout} "
                                     "must name an integer parameter")
        return self

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"parameter name {name!r} must be an identifier")
        return value


VERSION_PROBE_STEP = "version probe"


def version_probe_step(spec: RunbookSpec) -> StepSpec | None:
    """A runbook's ``version_probe`` as the step that runs it."""
    if spec.version_probe is None:
        return None
    return StepSpec(name=VERSION_PROBE_STEP, run=spec.version_probe, timeout=30,
                    capture="version")
