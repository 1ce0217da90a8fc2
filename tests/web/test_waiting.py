"""Jobs waiting for a person (issue #32, item 10): GET /api/jobs/waiting, what it says to
an operator and to a viewer, the header on first paint (no script needed) on every
page, and the dashboard's card with the gate's actions."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.web.test_openapi import answer_problems

BATCHES = [["gs-01"], ["gs-02", "gs-03", "gs-04"]]


@pytest.fixture
def paused(app, auth):
    """alice (operator) and vera (viewer); job 7 paused after its canary, job 8 done."""
    from extensions import db
    from models import Job, JobEvent, User

    auth.create("alice")
    auth.create("vera", PASSWORD, "viewer")
    with app.app_context():
        alice = db.session.query(User).filter_by(username="alice").one()
        db.session.add(Job(id=7, runbook="game-update", params={"version": "1.4.9"},
                           strategy={"batches": [1], "gate": "manual"}, status="paused",
                           created_by_id=alice.id, target_version="1.4.9", last_seq=2))
        db.session.add(Job(id=8, runbook="basic", params={}, strategy={},
                           status="succeeded"))
        db.session.add(JobEvent(job_id=7, seq=1, ts=1000.0, type="job_started", host=None,
                                data={"runbook": "game-update", "batches": BATCHES}))
        db.session.add(JobEvent(job_id=7, seq=2, ts=1012.5, type="job_paused", host=None,
                                data={"batch": 0, "next_batch": 1, "reason": "manual"}))
        db.session.commit()
    return app


def test_the_api_lists_a_paused_job_with_its_gate_for_an_operator(paused, auth, client):
    auth.login("alice")
    response = client.get("/api/jobs/waiting")
    document = client.get("/api/openapi.json").get_json()

    body = response.get_json()
    assert response.status_code == 200
    assert answer_problems(document, "/api/jobs/waiting", "get", 200, body) == []
    assert (body["count"], body["for_you"]) == (1, True)
    assert body["jobs"] == [{
        "job_id": 7, "runbook": "game-update", "kind": "runbook", "target_version": "1.4.9",
        "created_by": "alice", "waiting": "gate", "since": 1012.5,
        "words": "paused after the canary (1 server); promoting starts batch 2 (3 servers)",
        "gate": {"batch": 0, "next_batch": 1, "next_name": "batch 2", "batches": 2,
                 "reason": "manual", "done_servers": ["gs-01"], "done_count": 1,
                 "next_servers": ["gs-02", "gs-03", "gs-04"], "next_count": 3,
                 "not_started": 3}}]


def test_a_viewer_sees_the_same_jobs_but_not_as_waiting_for_them(paused, auth, client):
    auth.login("vera")
    body = client.get("/api/jobs/waiting").get_json()
    page = client.get("/servers").get_data(as_text=True)

    assert (body["count"], body["for_you"], body["jobs"][0]["job_id"]) == (1, False, 7)
    assert re.search(r'<a class="waiting-link" id="waiting-link" href="/jobs/7"[^>]*>'
                     r"1 rollout waiting for an operator</a>", page)


def test_every_page_s_header_names_the_waiting_job_on_first_paint(paused, auth, client):
    auth.login("alice")
    pages = {url: client.get(url).get_data(as_text=True)
             for url in ("/", "/servers", "/jobs", "/jobs/8", "/account")}

    for url, page in pages.items():
        assert re.search(r'<a class="waiting-link" id="waiting-link" href="/jobs/7"[^>]*>'
                         r"1 rollout waiting for you</a>", page), url
        assert "js/core/waiting.js" in page, url


def test_several_waiting_jobs_link_to_the_list_and_none_hides_the_link(paused, auth,
                                                                       client):
    from extensions import db
    from models import Job

    auth.login("alice")
    with paused.app_context():
        db.session.add(Job(id=9, runbook="basic", params={}, strategy={}, status="paused"))
        db.session.commit()
    several = client.get("/servers").get_data(as_text=True)
    with paused.app_context():
        for job in db.session.query(Job).filter(Job.status == "paused"):
            job.status = "succeeded"
        db.session.commit()
    none = client.get("/servers").get_data(as_text=True)

    assert re.search(r'id="waiting-link" href="/jobs\?status=paused"[^>]*>'
                     r"2 rollouts waiting for you</a>", several)
    assert re.search(r'id="waiting-link" href="[^"]*"[^>]*hidden></a>', none)
    assert client.get("/api/jobs/waiting").get_json() == {"count": 0, "jobs": [],
                                                          "for_you": True}


def test_the_dashboard_starts_with_the_waiting_job_and_its_gate_actions(paused, auth,
                                                                        client):
    auth.login("alice")
    page = client.get("/").get_data(as_text=True)

    panel = page[page.index('<section id="waiting-panel"'):page.index("</section>")]
    assert page.index('id="waiting-panel"') < page.index('id="rollout-form"')
    assert "Waiting for you" in panel and "Job #7" in panel and " hidden" not in \
        panel.split(">", 1)[0]
    assert "paused after the canary (1 server); promoting starts batch 2 (3 servers)" in panel
    assert 'data-action="promote">Promote: start batch 2</button>' in panel
    assert 'data-action="abort">Abort at this gate</button>' in panel


def test_the_waiting_list_needs_a_login(paused):
    response = paused.test_client().get("/api/jobs/waiting")
    assert (response.status_code, response.get_json()["error"]["code"]) == \
        (401, "unauthorized")
