"""The one way in for every job action: start, ad-hoc, plan, re-run, cancel, and promote
or abort at a gate.

The JSON API (``blueprints/api/jobs.py``) and the Socket.IO handlers
(``blueprints/live/handlers.py``)
both parse payloads with :func:`parse` (and :func:`parse_job_request` for
``POST /api/jobs``), call a :class:`Commands` method, and answer errors with
:func:`error_body` (plus :func:`http_status` over HTTP). So the same bad input gets the
same ``{"code", "message", "field"}`` through either door and changes nothing, and every
action writes the same audit entry (its ``via`` says which door). An audit entry holds
the parameters and the command as the plan shows them: secrets masked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from models import Job
from services.history import since_words, succeeded_since
from services.schemas.nul import nul_field
from services.schemas.payloads import AdhocCommand, StartJob
from tasks.engine import JobEngine, JobPlan
from tasks.errors import PatchbayError
from tasks.planning.adhoc import CommandRunbook
from tasks.planning.rollback import rollback_runbook
from tasks.planning.runbook_files import RunbookError

Model = TypeVar("Model", bound=BaseModel)
JobRequest = StartJob | AdhocCommand

STATUS_OF = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "server_busy": 409,
             "search_too_broad": 422, "rate_limited": 429, "internal": 500}


def internal_error() -> PatchbayError:
    """What a client is told about a failure of ours (the details go to the log)."""
    return PatchbayError("internal", "internal error; see the server log")


def http_status(error: PatchbayError) -> int:
    """The HTTP status of an error code: 400 unless it is one of :data:`STATUS_OF`."""
    return STATUS_OF.get(error.code, 400)


def error_body(error: PatchbayError) -> dict[str, Any]:
    """An error ack, and the body of an HTTP error: ``{"ok": false, "error": {...}}``."""
    return {"ok": False, "error": error.to_dict()}


def validation_error(exc: ValidationError) -> PatchbayError:
    """The first problem of a pydantic error, as an error naming its field."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = f"{field} is required"
    elif first["type"] == "extra_forbidden":
        message = f"unknown field {field}"
    else:
        message = f"{field}: {message}" if field else message
    return PatchbayError("invalid", message, field)


def parse(schema: type[Model], payload: Any, what: str = "payload") -> Model:
    """``payload`` checked against ``schema``; ``invalid`` naming the field otherwise.

    ``what`` names the payload in the message ("payload" for a socket event, "body"
    for an HTTP request)."""
    if not isinstance(payload, dict):
        raise PatchbayError("invalid", f"the {what} must be a JSON object")
    refused = nul_field(payload)
    if refused:
        raise PatchbayError("invalid", f"{refused} contains a NUL character", refused)
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_job_request(payload: Any, what: str = "body") -> JobRequest:
    """A runbook job (``runbook``) or an ad-hoc command (``command``): exactly one."""
    if isinstance(payload, dict):
        if "runbook" in payload and "command" in payload:
            raise PatchbayError("invalid", "give either runbook (a runbook job) or command "
                                "(an ad-hoc command), not both", "command")
        if "runbook" not in payload and "command" not in payload:
            raise PatchbayError("invalid", "runbook (a runbook job) or command (an ad-hoc "
                                "command) is required", "runbook")
        if "command" in payload:
            return parse(AdhocCommand, payload, what)
    return parse(StartJob, payload, what)


@dataclass(frozen=True)
class Caller:
    """Who asks, and through which door (``api``, ``socket``): for the job and the audit."""

    user_id: int | None
    via: str


class Commands:
    """Job actions on behalf of a user, each with its audit entry.

    ``audit(action, target, **detail)`` records an entry for the current user (the web
    layer's :func:`services.audit.record`). Every method raises
    :class:`PatchbayError` for a request it refuses, before anything has changed."""

    def __init__(self, engine: JobEngine, audit: Callable[..., None]) -> None:
        self.engine = engine
        self.audit = audit

    def plan(self, request: JobRequest) -> dict[str, Any]:
        """What the job would run, per server, with parameters quoted as they will be."""
        return self._plan(request).preview()

    def start(self, request: JobRequest, caller: Caller,
              on_recorded: Callable[[int], None] | None = None) -> int:
        """Start a runbook job or an ad-hoc command; returns the new job's id
        (``on_recorded``: see :meth:`JobEngine.start`)."""
        plan = self._plan(request)
        job_id = self.engine.start(plan, caller.user_id, on_recorded=on_recorded)
        shown = dict(plan.shown_params or {})
        if isinstance(request, AdhocCommand):
            self.audit("job.adhoc", f"job #{job_id}", command=shown["command"],
                       servers=request.servers, tags=request.tags, via=caller.via)
        else:
            self.audit("job.start", f"job #{job_id}", runbook=request.runbook,
                       params=shown, servers=request.servers, tags=request.tags,
                       via=caller.via)
        return job_id

    def rerun(self, job_id: int, caller: Caller,
              on_recorded: Callable[[int], None] | None = None) -> int:
        """Start job ``job_id`` again on its servers that did not succeed and that no
        later job has fixed since (:func:`services.history.succeeded_since`)."""
        with self.engine.planner.db_sessions() as session:
            fixed = succeeded_since(session, job_id)
            job = session.get(Job, job_id)
            left = [host.name for host in job.hosts if host.status != "succeeded"
                    and host.name not in fixed] if job else []
        if fixed and not left:
            raise PatchbayError("invalid", f"nothing left to re-run in job #{job_id}: "
                                f"{since_words(fixed)}", "job_id")
        new_id = self.engine.start(self.engine.rerun_plan(job_id, set(fixed)),
                                   caller.user_id, rerun_of=job_id,
                                   on_recorded=on_recorded)
        self.audit("job.rerun", f"job #{new_id}", rerun_of=job_id, via=caller.via)
        return new_id

    def cancel(self, job_id: int, caller: Caller) -> dict[str, Any]:
        """Ask job ``job_id`` to stop: ``{"cancelled", "status", "message"}``."""
        result = self.engine.cancel(job_id)
        self.audit("job.cancel", f"job #{job_id}", cancelled=result["cancelled"],
                   via=caller.via)
        return result

    def rollback(self, servers: list[str], runbook: str | None, caller: Caller) -> int:
        """Start a job of kind ``rollback`` putting each server back on its previous
        build (:mod:`tasks.planning.rollback`); returns its id."""
        try:
            books = self.engine.runbooks()
        except RunbookError as exc:
            raise PatchbayError("runbook_invalid", str(exc), "runbook") from None
        with self.engine.planner.db_sessions() as session:
            book, builds = rollback_runbook(session, books, servers, runbook)
        job_id = self.engine.start(self.engine.plan(book, None, servers), caller.user_id)
        self.audit("job.rollback", f"job #{job_id}", runbook=book.name, servers=servers,
                   to={name: getattr(target, "version", None)
                       for name, target in builds.items()}, via=caller.via)
        return job_id

    def promote(self, job_id: int, caller: Caller) -> dict[str, Any]:
        """Let a job paused at a manual gate run its next batch."""
        return self._decide_gate(job_id, "promote", caller)

    def abort(self, job_id: int, caller: Caller) -> dict[str, Any]:
        """Stop a job paused at a manual gate: its servers not started are skipped."""
        return self._decide_gate(job_id, "abort", caller)

    def _decide_gate(self, job_id: int, action: str, caller: Caller) -> dict[str, Any]:
        result = self.engine.decide_gate(job_id, action, caller.user_id)
        self.audit(f"job.{action}", f"job #{job_id}", via=caller.via)
        return result

    def _plan(self, request: JobRequest) -> JobPlan:
        if isinstance(request, AdhocCommand):
            return self.engine.plan(CommandRunbook(), {"command": request.command},
                                    request.servers, request.tags, request.strategy)
        return self.engine.plan(request.runbook, request.params, request.servers,
                                request.tags, request.strategy)
