"""Loading runbook files: YAML in, a validated :class:`~tasks.planning.runbooks.Runbook`
out, or a :class:`RunbookError` that names the file, the field and the line.

Beyond the schema, a loaded file's placeholders must name what exists (a parameter, a
host field, ``previous_version`` in rollback steps only) and sit where shell quoting
holds (:mod:`tasks.planning.shell_context`), so a bad runbook fails when it is loaded,
not when a job runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from tasks.planning.pattern_start import may_start_with_dash
from tasks.planning.runbook_schema import (
    HOST_FIELDS,
    PLACEHOLDER,
    RunbookSpec,
    StepSpec,
    version_probe_step,
)
from tasks.planning.runbooks import Runbook
from tasks.planning.shell_context import placeholder_sites


class RunbookError(ValueError):
    """A runbook file that cannot be used; the message names the file and the field."""


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
