"""A runbook name that names no runbook: the refusal keeps its code (``unknown_runbook``)
and field (``runbook``) and asks about the close match when there is one, through the
API, Socket.IO and rollbacks alike."""

from __future__ import annotations

import pytest

from tests.conftest import page_csrf_token, socket_test_client


@pytest.fixture
def operator(app, auth, client):
    """alice (operator), logged in; one server, s1 (no SSH behind it)."""
    from extensions import db
    from models import Server

    auth.create("alice")
    with app.app_context():
        db.session.add(Server(name="s1", host="127.0.0.1", port=1, user="root", tags=["t"],
                              vars={}))
        db.session.commit()
    auth.login()
    return client


def test_the_close_match_is_asked_about_and_nothing_else():
    from tasks.planning.runbook_names import unknown_runbook

    known = ["basic", "game-update", "sleepy", "versioned"]
    refusals = {name: unknown_runbook(name, known) for name in
                ("game-updat", "Game-Update", "sleppy", "nothing-like-it", "")}

    assert {name: error.message for name, error in refusals.items()} == {
        "game-updat": "no runbook named 'game-updat' (did you mean game-update?)",
        "Game-Update": "no runbook named 'Game-Update' (did you mean game-update?)",
        "sleppy": "no runbook named 'sleppy' (did you mean sleepy?)",
        "nothing-like-it": "no runbook named 'nothing-like-it'",
        "": "no runbook named ''",
    }
    assert {(error.code, error.field) for error in refusals.values()} == \
        {("unknown_runbook", "runbook")}
    assert unknown_runbook("basic", []).message == "no runbook named 'basic'"


def refusal(response) -> tuple[int, dict]:
    body = response.get_json()
    assert body["ok"] is False, body
    return response.status_code, body["error"]


def test_the_api_and_the_socket_suggest_the_close_runbook(operator, app):
    headers = {"X-CSRFToken": page_csrf_token(operator)}
    start = {"params": {"message": "hi"}, "servers": ["s1"]}

    typo = operator.post("/api/jobs", headers=headers, json={**start, "runbook": "basik"})
    planned = operator.post("/api/jobs/plan", headers=headers,
                            json={**start, "runbook": "sleepi"})
    far = operator.post("/api/jobs", headers=headers, json={**start, "runbook": "zzzz"})
    rollback = operator.post("/api/servers/s1/rollback", headers=headers,
                             json={"runbook": "versiond"})
    sock = socket_test_client(app, operator)
    ack = sock.emit("job:start", {**start, "runbook": "basik"}, callback=True)
    sock.disconnect()

    assert refusal(typo) == (400, {"code": "unknown_runbook", "field": "runbook",
                                   "message": "no runbook named 'basik' "
                                              "(did you mean basic?)"})
    assert refusal(planned)[1]["message"] == \
        "no runbook named 'sleepi' (did you mean sleepy?)"
    assert refusal(far)[1] == {"code": "unknown_runbook", "field": "runbook",
                               "message": "no runbook named 'zzzz'"}
    assert refusal(rollback)[1] == {"code": "unknown_runbook", "field": "runbook",
                                    "message": "no runbook named 'versiond' "
                                               "(did you mean versioned?)"}
    assert ack == {"ok": False, "error": refusal(typo)[1]}
    assert operator.get("/api/jobs").get_json()["jobs"] == []  # nothing started
