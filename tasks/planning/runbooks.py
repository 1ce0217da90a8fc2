"""Runbooks: YAML files describing typed parameters and ordered shell steps.

Templating is plain substitution, not Jinja: ``{{ params.NAME }}``, ``{{ vars.NAME }}``,
``{{ host.name|address|port|user }}`` and, in a ``rollback:`` step only,
``{{ previous_version }}`` (the build the server ran before its current one). Every
substituted value is inserted shell-quoted, so no parameter or variable can ever become
shell syntax, and a template cannot reach any Python object.

A parameter declared ``secret: true`` and a server's secret variables are substituted
into the command sent to the server only: each rendered step also carries ``shown``,
the same command with every secret substituted as ``••••`` (:data:`tasks.planning.secrets.MASK`),
which is what events, plans and pages show.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import PatchbayError
from tasks.planning import safe_regex
from tasks.planning.pattern_start import may_start_with_dash
from tasks.planning.secrets import MASK
from tasks.planning.shell_context import placeholder_sites

# Group 1 and 2: scope and name (``params.version``); group 3: ``previous_version``.
PLACEHOLDER = re.compile(r"\{\{\s*(?:([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)"
                         r"|(previous_version))\s*\}\}")
PREVIOUS_VERSION = "previous_version"
# A wait step's timeout may come from an integer parameter: "{{ params.NAME }}".
PARAM_REFERENCE = re.compile(r"\{\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_WAIT_SECONDS = 86_400
HOST_FIELDS = ("name", "address", "port", "user")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAX_PARAM_LENGTH = 1024


class RunbookError(ValueError):
    """A runbook file that cannot be used; the message names the file and the field."""


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


@dataclass(frozen=True)
class HostContext:
    """What a template may know of the server it runs on.

    ``secret_vars`` name the variables shown masked; ``unavailable`` maps a variable
    whose value cannot be had now (its environment variable is unset, its sealed value
    unreadable) to the error a step that uses it fails planning with."""

    name: str
    address: str
    port: int
    user: str
    vars: dict[str, Any]
    secret_vars: frozenset[str] = frozenset()
    unavailable: dict[str, str] = field(default_factory=dict)
    previous_version: str | None = None  # for rollback steps


@dataclass(frozen=True)
class WaitPlan:
    """A wait step as planned: its timeout resolved to seconds."""

    until: str
    every: float
    timeout: float
    on_timeout: str

    def to_json(self) -> dict[str, Any]:
        return {"until": self.until, "every": self.every, "timeout": self.timeout,
                "on_timeout": self.on_timeout}


@dataclass(frozen=True)
class RenderedStep:
    """One step as it runs: ``command`` is what the server gets (secrets included,
    kept in memory only), ``shown`` what anyone else sees (secrets masked). A wait
    step's ``command`` is its probe."""

    name: str
    command: str
    timeout: float | None
    capture: str | None
    shown: str | None = None  # None: nothing secret, shown as the command
    wait: WaitPlan | None = None
    health: bool = False

    def __post_init__(self) -> None:
        if self.shown is None:
            object.__setattr__(self, "shown", self.command)


class Runbook:
    """A validated runbook, ready to check parameters and render commands."""

    kind = "runbook"  # the kind of job it makes (Job.kind); ad-hoc commands say "adhoc"

    def __init__(self, spec: RunbookSpec, source: str) -> None:
        self.spec = spec
        self.source = source

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "description": self.spec.description,
            "params": {name: _describe_param(p) for name, p in self.spec.params.items()},
            "steps": [step.name for step in self.spec.steps],
            "on_failure": [step.name for step in self.spec.on_failure],
            "rollback": [step.name for step in self.spec.rollback],
            "health": [step.name for step in self.spec.steps if step.health],
            "version_param": self.spec.version_param,
            "strategy": self.spec.strategy,
        }

    def validate_params(self, raw: Any) -> dict[str, str]:
        """Check ``raw`` against the declared parameters; return them as strings."""
        if not isinstance(raw, dict):
            raise PatchbayError("invalid", "params must be an object", "params")
        unknown = sorted(set(raw) - set(self.spec.params))
        if unknown:
            raise PatchbayError(
                "invalid", f"unknown parameter {unknown[0]!r} for runbook {self.name}",
                f"params.{unknown[0]}",
            )
        values: dict[str, str] = {}
        for name, spec in self.spec.params.items():
            field = f"params.{name}"
            value = raw.get(name, spec.default)
            if value is None or value == "":
                if spec.required:
                    raise PatchbayError("invalid", f"parameter {name!r} is required", field)
                values[name] = ""
                continue
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise PatchbayError("invalid", f"parameter {name!r} must be a string", field)
            text = str(value)
            if len(text) > MAX_PARAM_LENGTH:
                raise PatchbayError("invalid", f"parameter {name!r} is too long", field)
            if "\x00" in text:
                raise PatchbayError("invalid", f"parameter {name!r} contains a NUL byte", field)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise PatchbayError("invalid", f"parameter {name!r} is not valid UTF-8 text",
                                    field) from None
            if spec.type == "integer" and not re.fullmatch(r"-?[0-9]+", text):
                raise PatchbayError("invalid", f"parameter {name!r} must be an integer", field)
            if spec.pattern and not safe_regex.fullmatch(spec.pattern, text):
                shown = "" if spec.secret else f" value {text!r}"
                raw = f"parameter {name!r}{shown} does not match {spec.pattern}"
                if spec.pattern_hint is None and spec.example is None:
                    raise PatchbayError("invalid", raw, field)
                raise PatchbayError("invalid", _pattern_words(name, spec), field, raw)
            values[name] = text
        return values

    def secret_params(self) -> frozenset[str]:
        """The names of the parameters declared ``secret: true``."""
        return frozenset(name for name, spec in self.spec.params.items() if spec.secret)

    def render(self, params: dict[str, str], host: HostContext,
               shown: dict[str, str] | None = None) -> list[RenderedStep]:
        """The main steps with every placeholder replaced by its shell-quoted value.

        ``shown`` holds the parameters as they may be shown (default: ``params`` with
        each secret one masked); a step's ``shown`` command is rendered from them, with
        secret parameters and variables as :data:`~tasks.planning.secrets.MASK`."""
        return [self._render_step(step, params, host, shown) for step in self.spec.steps]

    def render_on_failure(self, params: dict[str, str], host: HostContext,
                          shown: dict[str, str] | None = None) -> list[RenderedStep]:
        return [self._render_step(step, params, host, shown)
                for step in self.spec.on_failure]

    def render_version_probe(self, params: dict[str, str], host: HostContext,
                             shown: dict[str, str] | None = None) -> RenderedStep | None:
        """The ``version_probe`` as a step capturing ``version`` (None without one)."""
        probe = version_probe_step(self.spec)
        return None if probe is None else self._render_step(probe, params, host, shown)

    def render_rollback(self, params: dict[str, str], host: HostContext,
                        shown: dict[str, str] | None = None) -> list[RenderedStep]:
        """The ``rollback:`` steps, ``{{ previous_version }}`` being
        ``host.previous_version``."""
        return [self._render_step(step, params, host, shown)
                for step in self.spec.rollback]

    def _render_step(self, step: StepSpec, params: dict[str, str], host: HostContext,
                     shown_params: dict[str, str] | None) -> RenderedStep:
        secret_params = self.secret_params()

        def value_of(match: re.Match[str], masked: bool) -> str:
            scope, key = match.group(1), match.group(2)
            if match.group(3):
                if host.previous_version is None:
                    raise PatchbayError("invalid", f"server {host.name} has no previous "
                                        "build to roll back to", "servers")
                value: Any = host.previous_version
            elif scope == "params":
                if masked and key in secret_params:
                    return MASK
                value = (shown_params if masked and shown_params is not None
                         else params)[key]
            elif scope == "host":
                value = getattr(host, key)
            elif key in host.unavailable:
                raise PatchbayError("invalid", f"{host.unavailable[key]} (needed by step "
                                    f"{step.name!r} of runbook {self.name})", "servers")
            elif key in host.vars:
                if masked and key in host.secret_vars:
                    return MASK
                value = host.vars[key]
            else:
                raise PatchbayError(
                    "invalid",
                    f"server {host.name} has no variable {key!r} needed by step "
                    f"{step.name!r} of runbook {self.name}",
                    "servers",
                )
            return shlex.quote(str(value))

        command = PLACEHOLDER.sub(lambda match: value_of(match, False), step.command)
        shown = PLACEHOLDER.sub(lambda match: value_of(match, True), step.command)
        wait = None
        if step.wait is not None:
            wait = WaitPlan(step.wait.until, step.wait.every,
                            self._wait_seconds(step, params), step.wait.on_timeout)
        return RenderedStep(step.name, command, step.timeout, step.capture, shown, wait,
                            step.health)

    def _wait_seconds(self, step: StepSpec, params: dict[str, str]) -> float:
        timeout = step.wait.timeout  # type: ignore[union-attr]
        if not isinstance(timeout, str):
            return float(timeout)
        name = PARAM_REFERENCE.fullmatch(timeout).group(1)  # type: ignore[union-attr]
        seconds = int(params[name])
        if not 0 < seconds <= MAX_WAIT_SECONDS:
            raise PatchbayError("invalid", f"{name} must be between 1 and "
                                f"{MAX_WAIT_SECONDS} seconds (it is the wait of step "
                                f"{step.name!r})", f"params.{name}")
        return float(seconds)


VERSION_PROBE_STEP = "version probe"


def version_probe_step(spec: RunbookSpec) -> StepSpec | None:
    """A runbook's ``version_probe`` as the step that runs it."""
    if spec.version_probe is None:
        return None
    return StepSpec(name=VERSION_PROBE_STEP, run=spec.version_probe, timeout=30,
                    capture="version")


def _pattern_words(name: str, spec: ParamSpec) -> str:
    """What a value that missed ``spec.pattern`` must be, from its hint and example."""
    if spec.pattern_hint is None:
        return f"{name} must look like {spec.example}"
    words = f"{name} must be {spec.pattern_hint}"
    if spec.example is not None and spec.example not in spec.pattern_hint:
        words += f", like {spec.example}"
    return words


def _describe_param(spec: ParamSpec) -> dict[str, Any]:
    described = spec.model_dump()
    if spec.secret and spec.default is not None:
        described["default"] = MASK
    return described


def parse_runbook(text: str, source: str) -> Runbook:
    """Parse and validate one runbook; raise :class:`RunbookError` naming source and field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunbookError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RunbookError(f"{source}: a runbook must be a mapping with name and steps")
    try:
        spec = RunbookSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        message = first["msg"].removeprefix("Value error, ")
        line = _yaml_line(text, first["loc"])
        raise RunbookError(f"{source}: field {where}: {message}"
                           + (f" (line {line})" if line else "")) from exc
    _check_placeholders(spec, source)
    return Runbook(spec, source)


def _yaml_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of ``text`` (a runbook that parsed) holding the field at ``loc``, or
    of the nearest enclosing field that is there (a missing field's mapping)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _check_placeholders(spec: RunbookSpec, source: str) -> None:
    probe = version_probe_step(spec)
    sections = {"steps": spec.steps, "on_failure": spec.on_failure,
                "rollback": spec.rollback, "version_probe": [probe] if probe else []}
    for section, steps in sections.items():
        for index, step in enumerate(steps):
            where = f"{source}: field {section}.{index}.{'run' if step.run else 'wait.command'}"
            if section == "version_probe":
                where = f"{source}: field version_probe"
            for match in PLACEHOLDER.finditer(step.command):
                scope, key = match.group(1), match.group(2)
                if match.group(3):
                    if section != "rollback":
                        raise RunbookError(f"{where}: {{{{ previous_version }}}} is only "
                                           "known in rollback steps")
                    continue
                if section == "rollback" and scope == "params" and key in spec.params \
                        and spec.params[key].required and spec.params[key].default is None:
                    raise RunbookError(f"{where}: a rollback takes no parameters, so "
                                       f"parameter {key!r} needs a default")
                if scope == "params" and key not in spec.params:
                    raise RunbookError(f"{where}: unknown parameter {key!r}")
                if scope == "host" and key not in HOST_FIELDS:
                    raise RunbookError(
                        f"{where}: host.{key} is not one of {', '.join(HOST_FIELDS)}")
                if scope not in ("params", "host", "vars"):
                    raise RunbookError(
                        f"{where}: unknown placeholder scope {scope!r} "
                        "(use params., vars. or host.)")
            leftover = re.sub(PLACEHOLDER, "", step.command)
            if "{{" in leftover or "}}" in leftover:
                raise RunbookError(
                    f"{where}: malformed placeholder (expected {{{{ scope.name }}}})")
            _check_shell_context(spec, step, f"{section}.{index}", source)


def _check_shell_context(spec: RunbookSpec, step: StepSpec, position: str,
                         source: str) -> None:
    """Refuse a placeholder where its shell quoting would not hold (tasks.planning.shell_context),
    and one where a command reads options unless its value cannot start with "-"."""
    text = step.command
    for site in placeholder_sites(text, PLACEHOLDER):
        if site.safe:
            continue
        where = f'{source}: step "{step.name}" ({position}), line {site.line}: '
        placeholder = text[site.start:site.end]
        if site.context == "option":
            why_dash = _may_start_with_dash(spec, placeholder)
            if why_dash is None:
                continue
            raise RunbookError(f"{where}{placeholder} is {site.describe()} ({why_dash}); "
                               f"{site.advice(text)}")
        raise RunbookError(f"{where}{placeholder} is {site.describe()}, where shell quoting "
                           f"cannot protect it; {site.advice(text)}")


def _may_start_with_dash(spec: RunbookSpec, placeholder: str) -> str | None:
    """Why a placeholder's value may start with "-", or None if it never does."""
    match = PLACEHOLDER.fullmatch(placeholder)
    assert match is not None
    scope, key = match.group(1), match.group(2)
    if scope == "params":
        pattern = spec.params[key].pattern
        if pattern is None:
            return f"parameter {key!r} has no pattern"
        if may_start_with_dash(pattern):
            return f"the pattern {pattern} of parameter {key!r} lets a value start with -"
        return None
    if scope in ("host", "vars"):
        # The inventory's own values, written by whoever writes the inventory, as the
        # runbook is: trusted like the runbook's text (docs/runbooks.md).
        return None
    return "the previous build is whatever a server reported"


def load_runbooks(directory: str | Path) -> dict[str, Runbook]:
    """Load every ``*.yml``/``*.yaml`` in ``directory``; the first bad one raises."""
    runbooks: dict[str, Runbook] = {}
    for path in sorted(Path(directory).glob("*.y*ml")):
        runbook = parse_runbook(path.read_text(encoding="utf-8"), path.name)
        if runbook.name in runbooks:
            raise RunbookError(
                f"{path.name}: field name: runbook {runbook.name!r} is also defined in "
                f"{runbooks[runbook.name].source}")
        runbooks[runbook.name] = runbook
    return runbooks
