"""The OpenAPI 3.1 document of the JSON API, generated, never written by hand.

Paths come from the app's URL map (every rule under ``/api/``, whichever blueprint added
it), so a new route is listed the moment it exists. What a route takes and answers comes
from :func:`documented`, which a view declares with the pydantic models of its body,
query string and answer (``services/schemas/``); a route that declares nothing is
still listed, with a generic description.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.schemas.answers import ErrorAnswer

View = TypeVar("View", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"
ATTRIBUTE = "openapi_operation"
PREFIX = "/api/"
ARGUMENT = re.compile(r"<(?:(?P<converter>[a-z]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
ERRORS = {
    400: "invalid input (the error names the field), or a missing or wrong X-CSRFToken",
    401: "not logged in",
    403: "your role may not use this route",
    404: "no such job (or server)",
    409: "a server is held by a running job",
    422: "search_too_broad: the search would look through too many output events; "
         "narrow it to a server (host) or a seq range (after_seq, before_seq)",
}


@dataclass(frozen=True)
class Operation:
    """What one route takes and answers, for the document."""

    summary: str
    body: tuple[type[BaseModel], ...] = ()
    query: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()


def documented(summary: str, *, body: type[BaseModel] | tuple[type[BaseModel], ...] = (),
               query: type[BaseModel] | None = None, answer: type[BaseModel] | None = None,
               status: int = 200, errors: tuple[int, ...] = ()) -> Callable[[View], View]:
    """Declare a view's body (one model, or several for "one of"), query string, answer
    and error statuses besides 401/403. Put it below the route decorator."""
    operation = Operation(summary, body if isinstance(body, tuple) else (body,), query,
                          answer, status, errors)

    def declare(view: View) -> View:
        setattr(view, ATTRIBUTE, operation)
        return view

    return declare


def openapi_document(app: Flask, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every ``/api/`` route of ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    operations: list[tuple[dict[str, Any], Operation | None]] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if not rule.rule.startswith(PREFIX):
            continue
        declared = getattr(app.view_functions[rule.endpoint], ATTRIBUTE, None)
        path, parameters = _path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            entry = {"operationId": f"{rule.endpoint}.{method.lower()}",
                     "tags": [rule.endpoint.partition(".")[0]]}
            if parameters:
                entry["parameters"] = list(parameters)
            paths.setdefault(path, {})[method.lower()] = entry
            operations.append((entry, declared))

    schemas, components = _schemas([op for _, op in operations if op is not None])
    for entry, declared in operations:
        described = _operation(declared, schemas)
        parameters = entry.pop("parameters", []) + described.pop("parameters", [])
        entry.update(described)
        if parameters:
            entry["parameters"] = parameters
    return {
        "openapi": "3.1.0",
        "info": {"title": "Patchbay", "version": version,
                 "description": "Roll builds onto game servers over SSH. The same actions "
                 "are Socket.IO events (docs/live-api.md), with the same payloads, "
                 "validation and error codes."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {
                    "type": "apiKey", "in": "cookie",
                    "name": app.config["SESSION_COOKIE_NAME"],
                    "description": "log in at /login; POST requests also send the CSRF "
                    "token in an X-CSRFToken header"},
                "token": {
                    "type": "http", "scheme": "bearer",
                    "description": "a personal API token (/account, POST /api/tokens): "
                    "Authorization: Bearer <token>, no CSRF token needed"},
            },
        },
        "security": [{"session": []}, {"token": []}],
    }


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """``/api/jobs/<int:job_id>`` -> ``/api/jobs/{job_id}`` and its path parameters."""
    parameters = [
        {"name": match["name"], "in": "path", "required": True,
         "schema": {"type": "integer", "minimum": 0} if match["converter"] == "int"
         else {"type": "string"}}
        for match in ARGUMENT.finditer(rule)]
    return ARGUMENT.sub(lambda match: "{" + match["name"] + "}", rule), parameters


def _schemas(operations: list[Operation]
             ) -> tuple[dict[tuple[type[BaseModel], str], Any], dict[str, Any]]:
    """JSON Schemas of every model the operations name, with shared definitions in
    ``components.schemas``."""
    wanted = {(ErrorAnswer, "serialization")}
    for operation in operations:
        wanted |= {(model, "validation") for model in operation.body}
        if operation.answer is not None:
            wanted.add((operation.answer, "serialization"))
    refs, definitions = models_json_schema(
        sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1])), ref_template=REF)
    return refs, definitions.get("$defs", {})


def _operation(declared: Operation | None, schemas: dict[Any, Any]) -> dict[str, Any]:
    errors = {str(status): {"description": ERRORS[status], "content": {"application/json": {
        "schema": schemas[(ErrorAnswer, "serialization")]}}}
        for status in sorted({401, 403, *(declared.errors if declared else ())})}
    if declared is None:
        return {"summary": "(not described in detail)",
                "description": "This route declares no schema; see docs/live-api.md.",
                "responses": {"default": {"description": "JSON; see docs/live-api.md"},
                              **errors}}
    answer: dict[str, Any] = {"description": declared.summary}
    if declared.answer is not None:
        answer["content"] = {"application/json": {
            "schema": schemas[(declared.answer, "serialization")]}}
    operation: dict[str, Any] = {"summary": declared.summary,
                                 "responses": {str(declared.status): answer, **errors}}
    if declared.body:
        bodies = [schemas[(model, "validation")] for model in declared.body]
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": bodies[0] if len(bodies) == 1 else {"oneOf": bodies}}}}
    if declared.query is not None:
        operation["parameters"] = _query_parameters(declared.query)
    return operation


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        field = _without_null(field)
        parameter: dict[str, Any] = {"name": name, "in": "query",
                                     "required": name in required, "schema": field}
        if "description" in field:
            parameter["description"] = field["description"]
        parameters.append(parameter)
    return parameters


def _without_null(field: dict[str, Any]) -> dict[str, Any]:
    """A query argument is absent or text, never null: ``X | None`` documents as X."""
    options = [option for option in field.get("anyOf", []) if option != {"type": "null"}]
    if len(options) != 1:
        return field
    rest = {key: value for key, value in field.items() if key != "anyOf"}
    if rest.get("default", 0) is None:
        del rest["default"]
    return {**options[0], **rest}
