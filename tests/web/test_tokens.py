"""API tokens: made through the API, the account page and ``flask create-token``; stored
hashed; accepted as ``Authorization: Bearer`` on the API (without CSRF) and by Socket.IO
(``auth: {"token"}``); refused once expired, revoked, or beyond their role."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import timedelta

import pytest
import socketio
from sqlalchemy import select

from tests.conftest import PASSWORD
from tests.support.waiting import wait_until


def csrf_token_of(client) -> str:
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


@pytest.fixture
def operator(app, auth, client):
    auth.create("olga", role="operator")
    assert auth.login("olga").status_code == 302
    return client


def make_token(client, **body) -> dict:
    response = client.post("/api/tokens", json={"name": "ci", **body},
                           headers={"X-CSRFToken": csrf_token_of(client)})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored(app, model, **where):
    from extensions import db

    with app.app_context():
        query = select(model).filter_by(**where)
        return db.session.scalars(query).all()


def test_a_token_is_shown_once_and_stored_hashed_and_audited(app, operator):
    from models import ApiToken, AuditEntry

    made = make_token(operator, expires_in_days=30)

    assert made["token"].startswith(made["prefix"]) and made["prefix"].startswith("pbt_")
    assert made["expires_at"].endswith("Z")
    [row] = stored(app, ApiToken)
    assert row.token_hash == hashlib.sha256(made["token"].encode()).hexdigest()
    columns = [str(getattr(row, c.key)) for c in ApiToken.__table__.columns]
    assert not any(made["token"] in value for value in columns)
    listed = operator.get("/api/tokens").get_json()["tokens"]
    assert [t["prefix"] for t in listed] == [made["prefix"]]
    assert made["token"] not in str(listed)
    [entry] = stored(app, AuditEntry, action="token.create")
    assert entry.username == "olga" and made["token"] not in str(entry.detail)


def test_a_bearer_token_works_on_the_api_without_csrf_and_records_its_use(app, operator):
    from models import ApiToken

    token = make_token(operator)["token"]
    fresh = app.test_client()  # no cookie at all

    assert fresh.get("/api/jobs", headers=bearer(token)).status_code == 200
    refused = fresh.post("/api/jobs", headers=bearer(token),
                         json={"runbook": "no-such-book", "params": {}, "servers": ["x"]})
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] != "csrf"  # judged on its content
    assert "Set-Cookie" not in refused.headers  # no session is made for a token
    [row] = stored(app, ApiToken)
    assert row.last_used_at is not None
    # A cookie session still needs its CSRF token, as before.
    assert operator.post("/api/jobs", json={"runbook": "x"}).get_json()["error"]["code"] \
        == "csrf"


@pytest.mark.parametrize("spoil,reason", [
    ("expire", "this token has expired"),
    ("revoke", "this token was revoked"),
    ("disable", "this token's user is disabled"),
    ("garble", "unknown token"),
])
def test_expired_revoked_and_orphaned_tokens_are_refused(app, operator, spoil, reason):
    from extensions import db
    from models import ApiToken, User, utcnow

    made = make_token(operator)
    token = made["token"]
    if spoil == "revoke":
        response = operator.delete(f"/api/tokens/{made['id']}",
                                   headers={"X-CSRFToken": csrf_token_of(operator)})
        assert response.get_json()["revoked"] is True
    with app.app_context():
        if spoil == "expire":
            db.session.get(ApiToken, made["id"]).expires_at = utcnow() - timedelta(seconds=1)
        if spoil == "disable":
            db.session.scalar(select(User).where(User.username == "olga")).active = False
        db.session.commit()
    if spoil == "garble":
        token = token[:-4] + "AAAA"

    response = app.test_client().get("/api/jobs", headers=bearer(token))

    assert response.status_code == 401
    assert response.get_json()["error"] == {"code": "unauthorized", "message": reason,
                                            "field": None}


def test_revoking_is_audited_and_only_your_own_tokens_can_be_revoked(app, auth, operator):
    from models import AuditEntry

    made = make_token(operator)
    auth.create("mallory", role="operator")
    other = app.test_client()
    from tests.conftest import AuthActions

    assert AuthActions(app, other).login("mallory").status_code == 302
    response = other.delete(f"/api/tokens/{made['id']}",
                            headers={"X-CSRFToken": csrf_token_of(other)})
    assert response.status_code == 404
    response = operator.delete(f"/api/tokens/{made['id']}",
                               headers={"X-CSRFToken": csrf_token_of(operator)})
    assert response.status_code == 200
    assert [e.username for e in stored(app, AuditEntry, action="token.revoke")] == ["olga"]


def test_a_token_acts_with_a_lower_role_never_a_higher_one(app, operator):
    viewer_token = make_token(operator, role="viewer")["token"]
    fresh = app.test_client()

    assert fresh.get("/api/jobs", headers=bearer(viewer_token)).status_code == 200
    refused = fresh.post("/api/jobs/plan", headers=bearer(viewer_token),
                         json={"runbook": "basic", "params": {}, "servers": ["x"]})
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == \
        "viewers can't preview jobs (that takes the operator role)"
    # Above the user's own role: refused, naming the field.
    response = operator.post("/api/tokens", json={"name": "x", "role": "admin"},
                             headers={"X-CSRFToken": csrf_token_of(operator)})
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "role"
    # A token mints no token at all (test_audit3b_1_...), let alone a higher one.
    response = fresh.post("/api/tokens", headers=bearer(viewer_token),
                          json={"name": "escalate", "role": "operator"})
    assert response.status_code == 403


@pytest.mark.parametrize("body,field", [
    ({"name": ""}, "name"),
    ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
    ({"name": "x", "expires_in_days": "7"}, "expires_in_days"),
    ({"name": "x", "role": "root"}, "role"),
    ({"name": "x", "colour": "red"}, "colour"),
])
def test_bad_token_requests_name_the_field_and_make_nothing(app, operator, body, field):
    from models import ApiToken

    response = operator.post("/api/tokens", json=body,
                             headers={"X-CSRFToken": csrf_token_of(operator)})
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert stored(app, ApiToken) == []


def test_the_account_page_makes_shows_once_and_revokes_tokens(app, operator):
    page = operator.get("/account").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    made = operator.post("/account/tokens", data={"name": "laptop", "expires_in_days": "",
                                                  "role": "viewer", "csrf_token": token})
    text = made.get_data(as_text=True)
    raw = re.search(r'id="new-token-value"[^>]*>(pbt_[^<]+)<', text).group(1)
    assert app.test_client().get("/api/jobs", headers=bearer(raw)).status_code == 200
    again = operator.get("/account").get_data(as_text=True)
    assert raw not in again and raw[:12] in again  # shown once; its prefix stays

    from models import ApiToken

    [row] = stored(app, ApiToken)
    operator.post(f"/account/tokens/{row.id}/revoke", data={"csrf_token": token})
    assert app.test_client().get("/api/jobs", headers=bearer(raw)).status_code == 401
    assert 'class="token-state">revoked' in operator.get("/account").get_data(as_text=True)


def test_flask_create_token_prints_the_token_alone_on_its_last_line(app, auth):
    auth.create("ci-bot", role="operator")
    result = app.test_cli_runner().invoke(args=["create-token", "ci-bot", "--name", "ci",
                                                "--expires-in-days", "7"])
    assert result.exit_code == 0, result.output
    raw = result.output.strip().splitlines()[-1]
    assert re.fullmatch(r"pbt_[A-Za-z0-9_-]{43}", raw)
    assert app.test_client().get("/api/jobs", headers=bearer(raw)).status_code == 200
    bad = app.test_cli_runner().invoke(args=["create-token", "nobody", "--name", "x"])
    assert bad.exit_code != 0 and "no user 'nobody'" in bad.output


def test_metrics_are_read_with_an_admin_token_not_a_lower_one(app, auth, client):
    from tests.conftest import AuthActions

    auth.create("ada", role="admin")
    assert AuthActions(app, client).login("ada").status_code == 302
    admin_token = make_token(client)["token"]
    capped = make_token(client, role="operator")["token"]
    scraper = app.test_client()

    response = scraper.get("/metrics", headers=bearer(admin_token))
    assert response.status_code == 200
    assert "patchbay_events_written_total" in response.get_data(as_text=True)
    assert scraper.get("/metrics", headers=bearer(capped)).status_code == 403
    anonymous = scraper.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.get_json()["error"]["code"] == "unauthorized"


# -- Socket.IO, against a real server process ------------------------------------------------


@pytest.mark.live
def test_a_socket_logs_in_with_a_token_and_is_dropped_when_it_is_revoked(
        live_server_factory):
    server = live_server_factory(users=[("olga", PASSWORD, "operator")])
    http = server.login("olga")
    made = http.post(f"{server.url}/api/tokens", json={"name": "ci", "role": "viewer"},
                     timeout=10).json()

    refused = socketio.Client(reconnection=False)
    reasons: list = []
    refused.on("connect_error", lambda data: reasons.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(server.url, auth={"token": "pbt_" + "x" * 43},
                        transports=["websocket"], wait_timeout=10)
    assert reasons == [{"message": "unauthorized: unknown token"}]

    client = socketio.Client(reconnection=False)
    dropped = threading.Event()
    client.on("disconnect", lambda *args: dropped.set())
    client.connect(server.url, auth={"token": made["token"]}, transports=["websocket"],
                   wait_timeout=10)
    ack = client.call("job:subscribe", {"job_id": 999}, timeout=10)
    assert ack["error"]["code"] == "not_found"  # a viewer may subscribe
    ack = client.call("job:start", {"runbook": "basic", "params": {}, "servers": ["x"]},
                      timeout=10)
    assert ack["error"] == {"code": "forbidden", "field": None,
                            "message": "viewers can't start jobs (that takes the operator "
                                       "role)"}

    response = http.delete(f"{server.url}/api/tokens/{made['id']}", timeout=10)
    assert response.status_code == 200
    wait_until(dropped.is_set, 10, "the token's socket to be dropped")


def age_login_sessions(app, minutes: int) -> None:
    """Move every login back ``minutes`` (the session's start is what re-auth goes by)."""
    from extensions import db
    from models import LoginSession

    with app.app_context():
        for row in db.session.scalars(select(LoginSession)):
            row.created_at -= timedelta(minutes=minutes)
        db.session.commit()


def test_audit3b_1_a_stolen_token_cannot_mint_a_lasting_one(app, operator):
    from models import ApiToken

    stolen = make_token(operator, expires_in_days=1)
    attacker = app.test_client()

    response = attacker.post("/api/tokens", headers=bearer(stolen["token"]),
                             json={"name": "attacker-persist"})

    assert response.status_code == 403
    assert "browser session, not with a token" in response.get_json()["error"]["message"]
    assert [t.name for t in stored(app, ApiToken)] == ["ci"]


def test_audit3_2_an_old_session_gives_its_password_again_to_make_a_token(app, operator):
    from models import ApiToken, AuditEntry

    age_login_sessions(app, 16)
    headers = {"X-CSRFToken": csrf_token_of(operator)}

    missing = operator.post("/api/tokens", json={"name": "ci"}, headers=headers)
    wrong = operator.post("/api/tokens", json={"name": "ci", "password": "guess-again"},
                          headers=headers)
    made = operator.post("/api/tokens", json={"name": "ci", "password": PASSWORD},
                         headers=headers)

    for refused in (missing, wrong):
        assert refused.status_code == 400
        assert refused.get_json()["error"]["field"] == "password"
    assert "15 minutes" in missing.get_json()["error"]["message"]
    assert made.status_code == 201, made.get_json()
    [row] = stored(app, ApiToken)
    assert row.created_from == "127.0.0.1"
    [entry] = stored(app, AuditEntry, action="token.create")
    assert entry.detail["created_from"] == "127.0.0.1"
    page = operator.get("/account").get_data(as_text=True)
    assert 'class="token-created-from">127.0.0.1<' in page
    # The page's form asks for the password the same way.
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    form = {"name": "laptop", "expires_in_days": "", "role": "viewer", "csrf_token": csrf}
    assert operator.post("/account/tokens", data=form).status_code == 400
    assert operator.post("/account/tokens",
                         data={**form, "password": PASSWORD}).status_code == 200
    assert len(stored(app, ApiToken)) == 2


def test_audit3_2_a_password_reset_revokes_the_tokens_a_stolen_cookie_minted(app, operator):
    from extensions import db
    from models import ApiToken

    minted = make_token(operator, name="attacker-persist")["token"]
    older = make_token(operator, name="ci-old")["token"]
    with app.app_context():
        row = db.session.scalar(select(ApiToken).filter_by(name="ci-old"))
        row.created_at -= timedelta(days=2)
        db.session.commit()
    runner = app.test_cli_runner()

    result = runner.invoke(args=["reset-password", "olga", "--password", "n3w-passw0rd"])

    assert result.exit_code == 0, result.output
    fresh = app.test_client()
    assert fresh.get("/api/jobs", headers=bearer(minted)).status_code == 401
    assert fresh.get("/api/jobs", headers=bearer(older)).status_code == 200
    result = runner.invoke(args=["set-role", "olga", "viewer", "--revoke-tokens"])
    assert result.exit_code == 0, result.output
    assert fresh.get("/api/jobs", headers=bearer(older)).status_code == 401


def test_audit3_2_the_users_page_offers_to_revoke_every_token(app, auth, operator):
    from extensions import db
    from models import ApiToken, User

    kept = make_token(operator, name="ci-old")["token"]
    with app.app_context():
        db.session.scalar(select(ApiToken)).created_at -= timedelta(days=2)
        olga = db.session.scalar(select(User).filter_by(username="olga"))
        olga_id = olga.id
        db.session.commit()
    auth.create("ada", role="admin")
    admin = app.test_client()
    assert type(auth)(app, admin).login("ada").status_code == 302
    page = admin.get("/admin/users").get_data(as_text=True)
    assert 'name="revoke_tokens"' in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"csrf_token": csrf, "action": "password", "role": "operator",
            "password": "n3w-passw0rd"}

    assert admin.post(f"/admin/users/{olga_id}", data=form).status_code == 302
    assert app.test_client().get("/api/jobs", headers=bearer(kept)).status_code == 200
    assert admin.post(f"/admin/users/{olga_id}",
                      data={**form, "revoke_tokens": "y"}).status_code == 302
    assert app.test_client().get("/api/jobs", headers=bearer(kept)).status_code == 401


def test_audit3b_5_a_role_asked_for_is_stored_as_asked_and_outlives_a_promotion(app, auth):
    from extensions import db
    from models import ApiToken

    auth.create("olga", role="operator")
    made = {}
    for name, role in (("capped", ["--role", "operator"]), ("follows", [])):
        result = app.test_cli_runner().invoke(args=["create-token", "olga", "--name", name,
                                                    *role])
        assert result.exit_code == 0, result.output
        made[name] = result.output.strip().splitlines()[-1]
    with app.app_context():  # older than a role change revokes by default
        for row in db.session.scalars(select(ApiToken)):
            row.created_at -= timedelta(days=2)
        db.session.commit()

    result = app.test_cli_runner().invoke(args=["set-role", "olga", "admin"])
    assert result.exit_code == 0, result.output

    roles = {row.name: row.role for row in stored(app, ApiToken)}
    assert roles == {"capped": "operator", "follows": None}
    scraper = app.test_client()
    assert scraper.get("/metrics", headers=bearer(made["capped"])).status_code == 403
    assert scraper.get("/metrics", headers=bearer(made["follows"])).status_code == 200
