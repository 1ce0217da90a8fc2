"""Every door checks who is knocking: each page, API route and Socket.IO event, for
each role, is allowed or forbidden as the permission table says. The tests walk what
is registered, so a new route or event without a rule fails here."""

from __future__ import annotations

import re

import pytest

from services.auth.permissions import HTTP_RULES, PUBLIC, ROLE_RANK, SOCKET_RULES
from tests.conftest import PASSWORD, socket_test_client

ROLES = ["viewer", "operator", "admin"]
SAMPLE_ARGS = {"job_id": 1, "user_id": 1, "filename": "css/app.css",
               "webhook_id": 1, "token_id": 1, "name": "h01"}


@pytest.fixture
def seeded(app):
    """Three users and one finished job, so every route has something to point at."""
    from extensions import db
    from models import Job, JobHost, Server, User

    with app.app_context():
        for role in ROLES:
            user = User(username=role, role=role)
            user.set_password(PASSWORD)
            db.session.add(user)
        db.session.add(Server(name="s1", host="127.0.0.1", port=22, user="root", tags=["t"],
                              vars={}))
        db.session.flush()
        job = Job(runbook="basic", params={}, strategy={}, status="succeeded", created_by_id=1)
        db.session.add(job)
        db.session.flush()
        db.session.add(JobHost(job_id=job.id, server_id=1, name="s1", status="succeeded"))
        db.session.commit()
    return app


def routes(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) for every registered route."""
    found = []
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for arg in rule.arguments:
            path = re.sub(rf"<(?:[a-z]+:)?{arg}>", str(SAMPLE_ARGS[arg]), path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, path))
    return found


def csrf_token(client) -> str:
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def log_in(client, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302


def test_every_route_and_event_has_a_rule(seeded):
    from extensions import socketio

    endpoints = {endpoint for endpoint, _, _ in routes(seeded)}
    events = set(socketio.server.handlers["/"]) - {"disconnect"}
    assert endpoints - set(HTTP_RULES) == set()
    assert events - set(SOCKET_RULES) == set()


@pytest.mark.parametrize("role", ROLES)
def test_http_doors_follow_the_table_for(seeded, role):
    client = seeded.test_client()
    log_in(client, role)
    token = csrf_token(client)
    outcomes = {}
    for endpoint, method, path in routes(seeded):
        if endpoint == "auth.logout":
            continue  # would end the session for the rest of the walk; tested below
        response = client.open(path, method=method, headers={"X-CSRFToken": token},
                               data={"csrf_token": token})
        outcomes[(endpoint, method)] = response.status_code

    for (endpoint, method), status in outcomes.items():
        rule = HTTP_RULES[endpoint]
        allowed = rule == PUBLIC or ROLE_RANK[role] >= ROLE_RANK[rule]
        assert (status != 403) == allowed, (role, endpoint, method, status)
        assert status < 500, (role, endpoint, method, status)
        if endpoint != "auth.login":  # a failed login answers 401 by design
            assert status != 401, (role, endpoint, method, status)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


def test_anonymous_gets_login_or_401_everywhere_but_public_doors(seeded):
    client = seeded.test_client()
    for endpoint, method, path in routes(seeded):
        if HTTP_RULES[endpoint] == PUBLIC:
            continue
        response = client.open(path, method=method)
        if path.startswith("/api/") or path == "/metrics":
            assert response.status_code == 401, (endpoint, method)
        elif method == "GET":
            assert response.status_code == 302, (endpoint, method)
            assert "/login" in response.headers["Location"]
        else:
            assert response.status_code in (302, 400), (endpoint, method)


@pytest.mark.parametrize("role", ROLES)
def test_socket_events_follow_the_table_for(seeded, role):
    from extensions import socketio

    client = seeded.test_client()
    log_in(client, role)
    sock = socket_test_client(seeded, client)
    assert sock.is_connected()
    for event in sorted(set(socketio.server.handlers["/"]) - {"connect", "disconnect"}):
        ack = sock.emit(event, {}, callback=True)
        allowed = ROLE_RANK[role] >= ROLE_RANK[SOCKET_RULES[event]]
        assert ack["ok"] is False  # an empty payload is never valid
        assert (ack["error"]["code"] != "forbidden") == allowed, (role, event, ack)
    sock.disconnect()


def test_a_viewer_cannot_start_a_job(seeded):

    client = seeded.test_client()
    log_in(client, "viewer")
    sock = socket_test_client(seeded, client)

    ack = sock.emit("job:start", {"runbook": "basic", "params": {"message": "hi"},
                                  "servers": ["s1"]}, callback=True)

    assert ack == {"ok": False, "error": {
        "code": "forbidden",
        "message": "viewers can't start jobs (that takes the operator role)",
        "field": None}}
    assert client.get("/api/jobs").get_json()["jobs"][0]["id"] == 1  # still only job #1


def test_a_socket_payload_with_a_nul_character_is_refused_naming_the_field(seeded):

    client = seeded.test_client()
    log_in(client, "operator")
    sock = socket_test_client(seeded, client)

    ack = sock.emit("job:start", {"runbook": "basic", "params": {"message": "h\x00i"},
                                  "servers": ["s1"]}, callback=True)

    assert ack == {"ok": False, "error": {
        "code": "invalid", "message": "params.message contains a NUL character",
        "field": "params.message"}}
    assert client.get("/api/jobs").get_json()["jobs"][0]["id"] == 1  # still only job #1


def test_anonymous_socket_is_refused_in_process(seeded):

    sock = socket_test_client(seeded, seeded.test_client())
    assert not sock.is_connected()
