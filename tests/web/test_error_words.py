"""Issue 32 (item 11): bad input is refused in words naming the field as the form
labels it, through the API and the socket alike; the raw rule is the error's
``detail`` (folded away on the page); ``code`` and ``field`` are as before."""

from __future__ import annotations

import pytest

from tests.conftest import page_csrf_token, socket_test_client

PLAN = {"runbook": "basic", "params": {"message": "hi"}, "servers": ["gs-01"]}


@pytest.fixture
def operator(app, auth):
    from extensions import db
    from models import Server

    with app.app_context():
        db.session.add(Server(name="gs-01", host="127.0.0.1", port=1, user="root",
                              tags=[], vars={}))
        db.session.commit()
    auth.create("olga")
    auth.login("olga")
    return app


def refused(client, path: str, body: dict) -> tuple[int, dict]:
    answer = client.post(path, json=body, headers={"X-CSRFToken": page_csrf_token(client)})
    return answer.status_code, answer.get_json()["error"]


@pytest.mark.parametrize(("body", "field", "message", "rule"), [
    ({**PLAN, "strategy": {"parallel": 0}}, "strategy.parallel",
     "Servers at once must be 1 or more",
     "strategy.parallel: Input should be greater than or equal to 1"),
    ({**PLAN, "strategy": {"parallel": "lots"}}, "strategy.parallel",
     "Servers at once must be a whole number",
     "strategy.parallel: Input should be a valid integer"),
    ({**PLAN, "strategy": {"timeout": 0}}, "strategy.timeout",
     "Step timeout must be more than 0", "strategy.timeout: Input should be greater than 0"),
    ({**PLAN, "strategy": {"batches": [0]}}, "strategy.batches",
     "Batches must each be 1 or more", None),
    ({**PLAN, "runbook": ""}, "runbook", "Runbook must not be empty",
     "runbook: String should have at least 1 character"),
    ({**PLAN, "servers": "gs-01"}, "servers", "Servers must be a list",
     "servers: Input should be a valid list"),
    ({"command": "", "servers": ["gs-01"]}, "command", "Shell command must not be empty",
     "command: String should have at least 1 character"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_bad_payload_is_refused_in_words_with_the_rule_in_the_detail(
        operator, client, body, field, message, rule):
    path = "/api/jobs" if "command" in body else "/api/jobs/plan"

    status, error = refused(client, path, body)

    assert status == 400
    assert (error["code"], error["field"], error["message"]) == ("invalid", field, message)
    assert error.get("detail") == rule


def test_the_socket_answers_the_same_words_and_detail(operator, client):
    body = {**PLAN, "strategy": {"parallel": 0}}
    sock = socket_test_client(operator, client)

    ack = sock.emit("job:plan", body, callback=True)

    assert ack == {"ok": False, "error": {
        "code": "invalid", "field": "strategy.parallel",
        "message": "Servers at once must be 1 or more",
        "detail": "strategy.parallel: Input should be greater than or equal to 1"}}


def test_a_token_with_a_bad_expiry_names_the_form_label(operator, client):
    status, error = refused(client, "/api/tokens", {"name": "ci", "expires_in_days": 0})

    assert status == 400
    assert (error["field"], error["message"]) == ("expires_in_days",
                                                  "Expires in (days) must be 1 or more")
    assert error["detail"] == "expires_in_days: Input should be greater than or equal to 1"
