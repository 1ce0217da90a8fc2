"""Ad-hoc commands: one shell command, run as typed on chosen servers.

An ad-hoc command is a job of kind ``adhoc`` whose runbook is built in memory with one
step named ``command``, so locks, cancel, the event log, history and re-runs treat it
like any other job. The command is the operator's own shell text and is the point of
the feature: it is run unchanged, without the placeholder substitution of runbooks
(``{{ x.y }}`` in it stays literal), and only checked to be non-empty, at most
:data:`MAX_COMMAND_LENGTH` characters and free of NUL bytes.

Since nothing is substituted, no secret reaches an ad-hoc command by a placeholder; the
typed text stays visible to every viewer, as the operator wrote it, except where it
holds a secret value of the job's servers (a secret inventory variable, at least
:data:`~tasks.planning.secrets.MIN_MASKED_LENGTH` characters, typed out literally): there it is
shown as ``••••``, in events, the job's params, the audit log and downloads alike, and
the server still runs the text as typed.
"""

from __future__ import annotations

from typing import Any

from tasks.errors import PatchbayError
from tasks.planning.rendered_steps import HostContext, RenderedStep
from tasks.planning.runbook_schema import RunbookSpec, StepSpec
from tasks.planning.runbooks import Runbook
from tasks.planning.secrets import Masker

KIND = "adhoc"
RUNBOOK_NAME = "adhoc"
STEP_NAME = "command"
MAX_COMMAND_LENGTH = 4096


def check_command(command: Any) -> str:
    """The command if it may run; otherwise :class:`PatchbayError` on field ``command``."""
    if not isinstance(command, str):
        raise PatchbayError("invalid", "command must be a string", "command")
    if not command.strip():
        raise PatchbayError("invalid", "command is empty", "command")
    if len(command) > MAX_COMMAND_LENGTH:
        raise PatchbayError(
            "invalid", f"command is longer than {MAX_COMMAND_LENGTH} characters", "command")
    if "\x00" in command:
        raise PatchbayError("invalid", "command contains a NUL byte", "command")
    return command


class CommandRunbook(Runbook):
    """A one-step runbook whose only parameter, ``command``, is the step's shell text."""

    kind = KIND

    def __init__(self) -> None:
        super().__init__(RunbookSpec(
            name=RUNBOOK_NAME, description="ad-hoc shell command",
            steps=[StepSpec(name=STEP_NAME, run="(the operator's command)")]), "ad-hoc")

    def validate_params(self, raw: Any) -> dict[str, str]:
        if not isinstance(raw, dict) or set(raw) != {"command"}:
            raise PatchbayError("invalid", "an ad-hoc job takes exactly one parameter, "
                                "command", "command")
        return {"command": check_command(raw["command"])}

    def render(self, params: dict[str, str], host: HostContext,
               shown: dict[str, str] | None = None) -> list[RenderedStep]:
        """The typed command; shown as ``shown["command"]`` (the planner masks it with
        every server's secrets), or else masked with this server's secret values."""
        if shown is None:
            secrets = Masker(str(host.vars[name]) for name in host.secret_vars
                             if name in host.vars)
            shown = {"command": secrets(params["command"])}
        return [RenderedStep(STEP_NAME, params["command"], None, None, shown["command"])]

    def render_on_failure(self, params: dict[str, str], host: HostContext,
                          shown: dict[str, str] | None = None) -> list[RenderedStep]:
        return []
