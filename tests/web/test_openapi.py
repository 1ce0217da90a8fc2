"""``/api/openapi.json``: a valid OpenAPI 3.1 document that lists every ``/api/`` route of
the app, describes the declared ones with the pydantic schemas, and agrees with what
the routes really answer."""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.conftest import PASSWORD

PATH_ARGUMENT = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?(\w+)>")


def answer_problems(document: dict, path: str, method: str, status: int,
                    body: object) -> list[str]:
    """Why ``body`` does not match the answer the document promises for ``path``
    (a template, ``/api/jobs/{job_id}``), ``method`` and ``status``; empty when it does."""
    responses = document["paths"][path][method.lower()]["responses"]
    if str(status) not in responses:
        return [f"{method} {path}: status {status} is not documented ({sorted(responses)})"]
    content = responses[str(status)].get("content")
    if content is None:
        return [f"{method} {path} {status}: no schema documented"]
    schema = {**content["application/json"]["schema"], "components": document["components"]}
    return [f"{method} {path} {status}: {error.message} at {list(error.absolute_path)}"
            for error in Draft202012Validator(schema).iter_errors(body)]


@pytest.fixture
def seeded(app, auth):
    """A viewer, one server and one finished job with a few events."""
    from extensions import db
    from models import Job, JobEvent, JobHost, Server

    auth.create("vera", role="viewer")
    with app.app_context():
        db.session.add(Server(name="s1", host="127.0.0.1", port=1, user="root", tags=["t"],
                              vars={}))
        db.session.flush()
        job = Job(runbook="basic", params={"message": "hi"}, strategy={}, status="failed",
                  created_by_id=1, last_seq=2)
        db.session.add(job)
        db.session.flush()
        db.session.add(JobHost(job_id=job.id, server_id=1, name="s1", status="failed",
                               failed_step="greet", exit_code=3, reason="exit 3"))
        db.session.add(JobEvent(job_id=job.id, seq=1, ts=1.5, type="host_started", host="s1",
                                data={"address": "127.0.0.1:1"}))
        db.session.add(JobEvent(job_id=job.id, seq=2, ts=2.5, type="output", host="s1",
                                data={"stream": "stdout", "step": "greet",
                                      "lines": ["hello there"]}))
        db.session.commit()
    auth.login("vera", PASSWORD)
    return app


def openapi_path(rule: str) -> str:
    return PATH_ARGUMENT.sub(r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1_and_lists_every_api_route(seeded, client):
    response = client.get("/api/openapi.json")
    document = response.get_json()

    validate(document)
    wanted = {(openapi_path(rule.rule), method.lower())
              for rule in seeded.url_map.iter_rules() if rule.rule.startswith("/api/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    listed = {(path, method) for path, item in document["paths"].items() for method in item}
    assert response.status_code == 200
    assert document["openapi"] == "3.1.0"
    assert listed == wanted
    assert ("/api/jobs", "post") in listed and ("/api/openapi.json", "get") in listed
    assert document["security"] == [{"session": []}, {"token": []}]


def test_declared_routes_carry_their_schemas(seeded, client):
    document = client.get("/api/openapi.json").get_json()
    paths, schemas = document["paths"], document["components"]["schemas"]

    start = paths["/api/jobs"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"] == {"oneOf": [
        {"$ref": "#/components/schemas/StartJob"},
        {"$ref": "#/components/schemas/AdhocCommand"}]}
    assert set(start["responses"]) == {"201", "400", "401", "403", "409"}
    assert schemas["StartJob"]["required"] == ["runbook"]
    assert schemas["StartJob"]["additionalProperties"] is False
    assert schemas["AdhocCommand"]["properties"]["command"]["maxLength"] == 4096
    assert paths["/api/jobs/{job_id}/cancel"]["post"]["parameters"] == [
        {"name": "job_id", "in": "path", "required": True,
         "schema": {"type": "integer", "minimum": 0}}]
    history = {p["name"]: p for p in paths["/api/jobs"]["get"]["parameters"]}
    assert set(history) == {"limit", "page", "before_id", "status", "runbook", "kind",
                            "user", "since", "until"}
    assert history["kind"]["schema"]["enum"] == ["runbook", "adhoc", "rollback"]
    assert set(schemas["RunbookParam"]["required"]) == {
        "type", "pattern", "required", "default", "description", "secret", "example",
        "pattern_hint"}


def test_a_route_without_a_declaration_is_listed_with_a_generic_description(app):
    from flask import Blueprint

    extra = Blueprint("extra", __name__, url_prefix="/api/extra")
    extra.add_url_rule("/<name>", "thing", lambda name: {"name": name},
                       methods=["GET", "DELETE"])
    app.register_blueprint(extra)
    from blueprints.api.openapi import openapi_document

    with app.app_context():
        document = openapi_document(app, "0.0.0")

    validate(document)
    item = document["paths"]["/api/extra/{name}"]
    assert set(item) == {"get", "delete"}
    assert item["get"]["responses"]["default"]["description"]
    assert item["get"]["parameters"] == [{"name": "name", "in": "path", "required": True,
                                          "schema": {"type": "string"}}]


def test_reading_routes_answer_what_the_document_promises(seeded, client):
    document = client.get("/api/openapi.json").get_json()
    reads = [
        ("/api/servers", "/api/servers"),
        ("/api/runbooks", "/api/runbooks"),
        ("/api/jobs?kind=runbook", "/api/jobs"),
        ("/api/jobs/1", "/api/jobs/{job_id}"),
        ("/api/jobs/1/events?after_seq=0", "/api/jobs/{job_id}/events"),
        ("/api/jobs/1/search?q=hello", "/api/jobs/{job_id}/search"),
        ("/api/jobs/99", "/api/jobs/{job_id}"),
        ("/api/jobs?limit=0", "/api/jobs"),
    ]

    problems, statuses = [], []
    for url, template in reads:
        response = client.get(url)
        statuses.append(response.status_code)
        problems += answer_problems(document, template, "get", response.status_code,
                                    response.get_json())

    assert problems == []
    assert statuses == [200, 200, 200, 200, 200, 200, 404, 400]


def test_runbooks_list_each_parameter_with_type_pattern_and_default(seeded, client):
    books = {book["name"]: book for book in client.get("/api/runbooks").get_json()["runbooks"]}

    assert books["flaky"]["params"]["ticks"] == {
        "type": "integer", "pattern": "^[0-9]{1,3}$", "description": "", "default": 4,
        "required": False, "secret": False, "example": "4",
        "pattern_hint": "a whole number below 1000"}
    assert books["basic"]["params"]["message"]["type"] == "string"
    assert books["basic"]["params"]["message"]["required"] is True


def test_the_document_needs_a_login_and_is_open_to_viewers(seeded, client):
    assert client.get("/api/openapi.json").status_code == 200  # vera is a viewer
    anonymous = seeded.test_client().get("/api/openapi.json")
    assert (anonymous.status_code, anonymous.get_json()["error"]["code"]) == \
        (401, "unauthorized")
