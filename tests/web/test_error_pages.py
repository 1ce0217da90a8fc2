"""Issue 32 (item 4): every 404 and 500 says what went wrong, in the form its reader
expects: a page with the layout and a link back, JSON in the API's error shape for
``/api/``, plain text for a log download; a 500 never shows the traceback and is logged;
a visitor who is not signed in is sent to log in, whether the job exists or not."""

from __future__ import annotations

import logging
import re

import pytest

SECRET = "s3cret-in-the-exception"


def seed_job(app) -> int:
    from extensions import db
    from models import Job, JobHost

    with app.app_context():
        job = Job(runbook="basic", params={}, strategy={}, status="succeeded",
                  created_by_id=1, last_seq=0)
        db.session.add(job)
        db.session.flush()
        db.session.add(JobHost(job_id=job.id, name="gs-01", position=0, status="succeeded"))
        db.session.commit()
        return job.id


@pytest.fixture
def operator(app, auth):
    auth.create("alice")
    auth.login("alice")
    return app


def back_link(page: str) -> str:
    match = re.search(r'<a id="back-link" href="([^"]+)">([^<]+)</a>', page)
    assert match, page
    return f"{match.group(1)} {match.group(2)}"


def test_an_unknown_job_page_has_the_layout_the_sentence_and_a_link_to_the_jobs(
        operator, client):
    response = client.get("/jobs/9999")

    page = response.get_data(as_text=True)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert '<header class="site-header">' in page and 'id="current-user"' in page
    assert '<p id="not-found-message">Job #9999 does not exist.</p>' in page
    assert back_link(page) == "/jobs Back to the jobs"
    assert client.get("/jobs/9999/output").get_data(as_text=True).count(
        "Job #9999 does not exist.") == 1


def test_a_log_download_of_an_unknown_job_or_server_says_so_in_plain_text(operator, client):
    job_id = seed_job(operator)

    no_server = client.get(f"/jobs/{job_id}/log.txt?host=gs-99")
    no_job = client.get("/jobs/9999/log.txt?host=gs-99")

    assert (no_server.status_code, no_server.mimetype) == (404, "text/plain")
    assert no_server.get_data(as_text=True) == f"Not found: job #{job_id} has no server gs-99.\n"
    assert (no_job.status_code, no_job.mimetype) == (404, "text/plain")
    assert no_job.get_data(as_text=True) == "Not found: job #9999 does not exist.\n"


def test_a_page_that_does_not_exist_links_to_the_dashboard(operator, client):
    response = client.get("/no/such/page")

    page = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "There is no page at /no/such/page." in page
    assert back_link(page) == "/ Back to the dashboard"


def test_an_unknown_webhook_says_which_and_links_to_the_webhooks(app, auth, client):
    auth.create("ada", role="admin")
    auth.login("ada")

    page = client.get("/admin/webhooks/77").get_data(as_text=True)

    assert "Webhook #77 does not exist." in page
    assert back_link(page) == "/admin/webhooks Back to the webhooks"


def test_the_api_answers_404_in_its_error_shape(operator, client):
    no_route = client.get("/api/no-such-thing")
    no_job = client.get("/api/jobs/9999")

    assert (no_route.status_code, no_route.mimetype) == (404, "application/json")
    assert no_route.get_json() == {"ok": False, "error": {
        "code": "not_found", "field": None,
        "message": "there is no API endpoint GET /api/no-such-thing "
                   "(see /api/openapi.json)"}}
    assert no_job.status_code == 404
    assert no_job.get_json()["error"]["code"] == "not_found"


def test_a_visitor_is_sent_to_log_in_whether_the_job_exists_or_not(app, auth, client):
    auth.create("alice")
    job_id = seed_job(app)

    answers = [client.get(path) for path in
               (f"/jobs/{job_id}", "/jobs/9999", f"/jobs/{job_id}/log.txt?host=gs-99",
                "/jobs/9999/log.txt")]

    assert [a.status_code for a in answers] == [302] * 4
    assert all("/login" in a.headers["Location"] for a in answers)
    unrouted = client.get("/no/such/page").get_data(as_text=True)
    assert back_link(unrouted) == "/login Log in" and 'id="current-user"' not in unrouted


@pytest.fixture
def failing(app, auth):
    """Doors that raise an exception holding a secret, opened to all (added before the
    app's first request, as Flask wants), and alice logged in."""
    from services.auth.permissions import open_to

    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not raise
    for path in ("/boom", "/boom.txt", "/api/boom"):
        endpoint = path.strip("/").replace("/", "_").replace(".", "_")
        app.add_url_rule(path, endpoint, _raise_secret)
        open_to(app, endpoint, lambda: True)
    auth.create("alice")
    auth.login("alice")
    return app


def _raise_secret():
    raise RuntimeError(f"database password is {SECRET}")


def test_a_500_page_has_the_layout_and_a_sentence_never_the_traceback(
        failing, client, caplog):
    with caplog.at_level(logging.ERROR):
        response = client.get("/boom")
        text = client.get("/boom.txt")

    page = response.get_data(as_text=True)
    assert response.status_code == 500 and '<header class="site-header">' in page
    assert "Something went wrong on our side; it has been logged." in page
    assert back_link(page) == "/ Back to the dashboard"
    assert SECRET not in page and "Traceback" not in page and "RuntimeError" not in page
    assert (text.status_code, text.mimetype) == (500, "text/plain")
    assert SECRET not in text.get_data(as_text=True)
    logged = [r for r in caplog.records if r.exc_info and SECRET in str(r.exc_info[1])]
    assert len(logged) == 2  # with the traceback, in the server's log only


def test_a_500_on_an_api_path_answers_in_the_api_shape(failing, client):
    response = client.get("/api/boom")

    assert response.status_code == 500
    assert SECRET not in response.get_data(as_text=True)
    assert response.get_json() == {"ok": False, "error": {
        "code": "internal", "message": "internal error; see the server log", "field": None}}
