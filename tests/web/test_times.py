"""Issue 32, item 14: every page says its times in one convention — UTC, 24-hour, to the
second, the zone said ("2026-12-07 05:29:14 UTC") — in a <time datetime="…Z" data-utc>
that static/js/core/times.js titles with the reader's local time (tests/js/times.test.mjs;
in Chromium: tests/browser/test_times.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from blueprints.http.times import utc_time

MOMENT = datetime(2026, 12, 7, 5, 29, 14, 123456)  # naive UTC, as the models keep them
SHOWN = "2026-12-07 05:29:14 UTC"
TIME = re.compile(r"<time\b([^>]*)>(.*?)</time>", re.S)
CONVENTION = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")


@pytest.mark.parametrize("moment", [
    MOMENT, MOMENT.replace(tzinfo=UTC), "2026-12-07T05:29:14.123456Z",
    "2026-12-07T05:29:14.123456+00:00", "2026-12-07T05:29:14.123456",
    MOMENT.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=-5))),
])
def test_the_filter_says_utc_24_hour_whatever_it_is_given(moment):
    assert str(utc_time(moment)) == (
        f'<time datetime="2026-12-07T05:29:14.123456Z" data-utc>{SHOWN}</time>')


def test_the_filter_gives_nothing_for_no_time():
    assert str(utc_time(None)) == "" and str(utc_time("")) == ""


def times_on(client, path: str) -> list[tuple[str, str]]:
    """Each <time>'s attributes and text on the page at ``path`` (200 asserted)."""
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code)
    return TIME.findall(answer.get_data(as_text=True))


def seed(app) -> dict[str, int]:
    """A finished job, a token, an audit entry, a webhook with a delivery and a console
    node, all at MOMENT (or a minute or two after)."""
    from extensions import db
    from models import ApiToken, AuditEntry, Job, JobHost, Node, User, Webhook, WebhookDelivery

    later = MOMENT + timedelta(minutes=1)
    with app.app_context():
        alice = db.session.query(User).filter_by(username="alice").one()
        job = Job(runbook="basic", params={}, strategy={"parallel": 1}, status="succeeded",
                  created_by_id=alice.id, created_at=MOMENT, finished_at=later, last_seq=0)
        db.session.add(job)
        db.session.flush()
        db.session.add(JobHost(job_id=job.id, name="h01", status="succeeded"))
        db.session.add(ApiToken(user_id=alice.id, name="ci", prefix="pb_times",
                                token_hash="0" * 64, created_at=MOMENT, expires_at=later,
                                last_used_at=later))
        db.session.add(AuditEntry(ts=MOMENT, username="alice", action="job.start",
                                  target=f"job #{job.id}"))
        hook = Webhook(url="https://chat.example.com/hook", events=["job_finished"],
                       created_by_id=alice.id, created_at=MOMENT)
        db.session.add(hook)
        db.session.add(Node(id="node-times", address="127.0.0.1:5000", version="test",
                            started_at=MOMENT, last_seen=datetime.now(UTC).replace(tzinfo=None)))
        db.session.flush()
        db.session.add(WebhookDelivery(webhook_id=hook.id, event="job_finished", job_id=job.id,
                                       body="{}", status="pending", attempts=1,
                                       created_at=MOMENT, last_attempt_at=later,
                                       next_attempt_at=later + timedelta(minutes=1)))
        db.session.commit()
        return {"job": job.id, "hook": hook.id}


def test_every_page_with_times_says_them_in_the_convention(app, auth, client):
    auth.create("alice", role="admin")
    auth.login("alice")
    ids = seed(app)
    pages = {"/jobs": 1, "/": 1, f"/jobs/{ids['job']}": 1, f"/jobs/{ids['job']}/output": 2,
             "/account": 3, "/admin/audit": 1, f"/admin/webhooks/{ids['hook']}": 4,
             "/admin/nodes": 1}
    for path, least in pages.items():
        found = times_on(client, path)
        assert len(found) >= least, (path, found)
        for attributes, text in found:
            if text.endswith(" ago"):  # the nodes' last heartbeat: the moment in its title
                assert CONVENTION.fullmatch(re.search(r'title="([^"]+)"', attributes)[1])
                continue
            assert CONVENTION.fullmatch(text), (path, text)
            assert "data-utc" in attributes, (path, attributes)
            iso = re.search(r'datetime="([^"]+)Z"', attributes).group(1)
            assert text == datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")
    for path in ("/jobs", f"/jobs/{ids['job']}", "/account", "/admin/audit",
                 f"/admin/webhooks/{ids['hook']}"):
        assert SHOWN in [text for _, text in times_on(client, path)], path
    hook_page = client.get(f"/admin/webhooks/{ids['hook']}").get_data(as_text=True)
    assert "2026-12-07 05:30:14 UTC" in hook_page and "2026-12-07 05:31:14 UTC" in hook_page
