"""A runbook as the engine uses it: checking a job's parameters and rendering its steps
for one server (the file itself: :mod:`tasks.planning.runbook_schema`, loaded by
:mod:`tasks.planning.runbook_files`).

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
from typing import Any

from tasks.errors import PatchbayError
from tasks.planning import safe_regex
from tasks.planning.rendered_steps import HostContext, RenderedStep, WaitPlan
from tasks.planning.runbook_schema import (
    MAX_WAIT_SECONDS,
    PARAM_REFERENCE,
    PLACEHOLDER,
    ParamSpec,
    RunbookSpec,
    StepSpec,
    version_probe_step,
)
from tasks.planning.secrets import MASK

MAX_PARAM_LENGTH = 1024


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
