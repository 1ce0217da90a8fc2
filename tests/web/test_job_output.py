"""Issue 25: a job's whole output on one page (/jobs/<id>/output), over a recorded event
log in a real database file: every line of every server in order, escaped, streams told
apart; the size limit (no line at all beyond it, the size and the downloads instead); a
running job says so; who may see it; secrets stay masked."""

from __future__ import annotations

import html
import re
from datetime import datetime

import pytest

from tasks.planning.secrets import MASK

SECRET = "hunter2-secret"
S1_GREET = ["hello from s1", "<script>alert('x')</script> & more", "ünïcode ✓"]
S1_WARN = ["a warning on stderr"]
S1_COUNT = [f"line {i}" for i in range(1, 301)]
S2_GREET = ["hello from s2", ""]
S2_BOOM = ["boom on s2"]


def event(seq: int, type_: str, host: str | None = None, **data) -> dict:
    return {"seq": seq, "ts": 1_800_000_000 + seq / 10, "type": type_, "host": host,
            "data": data}


def step(host: str, name: str, phase: str = "steps") -> dict:
    return {"step": name, "index": 0, "phase": phase, "command": "echo"}


EVENTS = [
    event(1, "job_started", servers=["s1", "s2"], runbook="basic", steps=["greet", "count"]),
    event(2, "host_started", "s1", address="127.0.0.1:1"),
    event(3, "host_started", "s2", address="127.0.0.1:2"),
    event(4, "step_started", "s1", **step("s1", "greet")),
    event(5, "step_started", "s2", **step("s2", "greet")),
    event(6, "output", "s1", stream="stdout", step="greet", lines=S1_GREET),
    event(7, "output", "s2", stream="stdout", step="greet", lines=S2_GREET),
    event(8, "output", "s1", stream="stderr", step="greet", lines=S1_WARN),
    event(9, "step_finished", "s1", step="greet", index=0, phase="steps", status="ok",
          exit_code=0, duration=0.5, reason=None),
    event(10, "step_started", "s1", **step("s1", "count")),
    event(11, "output", "s1", stream="stdout", step="count", lines=S1_COUNT[:150]),
    event(12, "output", "s2", stream="stderr", step="greet", lines=S2_BOOM),
    event(13, "step_finished", "s2", step="greet", index=0, phase="steps", status="failed",
          exit_code=3, duration=0.7, reason="exited with code 3"),
    event(14, "output", "s1", stream="stdout", step="count", lines=S1_COUNT[150:]),
    event(15, "step_finished", "s1", step="count", index=1, phase="steps", status="ok",
          exit_code=0, duration=0.9, reason=None),
    event(16, "host_finished", "s2", status="failed", failed_step="greet", exit_code=3,
          reason="step 'greet' exited with code 3", duration=1.5),
    event(17, "host_finished", "s1", status="succeeded", duration=1.0),
    event(18, "job_finished", status="failed", counts={"succeeded": 1, "failed": 1},
          duration=2.0),
]
LINES = {"s1": [("stdout", line) for line in S1_GREET] + [("stderr", S1_WARN[0])]
         + [("stdout", line) for line in S1_COUNT],
         "s2": [("stdout", line) for line in S2_GREET] + [("stderr", S2_BOOM[0])]}


def seed(app, events: list[dict], status: str) -> None:
    from extensions import db
    from models import Job, JobEvent, JobHost, Server

    with app.app_context():
        for port, name in enumerate(("s1", "s2"), start=1):
            db.session.add(Server(name=name, host="127.0.0.1", port=port, user="root",
                                  tags=[], vars={}))
        db.session.flush()
        job = Job(runbook="basic", params={"message": "hi", "password": MASK},
                  strategy={}, status=status, created_by_id=1, last_seq=len(events),
                  finished_at=None if status == "running"
                  else datetime.now().replace(microsecond=0))
        db.session.add(job)
        db.session.flush()
        outcomes = [("s1", "succeeded", None, None), ("s2", "failed", 3,
                                                       "step 'greet' exited with code 3")]
        if status == "running":
            outcomes = [("s1", "running", None, None), ("s2", "running", None, None)]
        for position, (name, host_status, code, reason) in enumerate(outcomes):
            db.session.add(JobHost(job_id=job.id, server_id=position + 1, name=name,
                                   position=position, status=host_status, exit_code=code,
                                   reason=reason, failed_step="greet" if code else None))
        for item in events:
            db.session.add(JobEvent(job_id=job.id, **item))
        db.session.commit()


@pytest.fixture
def viewer(app, auth):
    """alice (operator, who started the job) and vera (viewer, who reads it), logged in
    as vera."""
    auth.create("alice")
    auth.create("vera", role="viewer")
    auth.login("vera")
    return app


def server_lines(page: str) -> dict[str, list[tuple[str, str]]]:
    """Each server section's output lines as (stream, text), in document order."""
    found: dict[str, list[tuple[str, str]]] = {}
    for section in re.finditer(r'<section class="output-server" data-host="([^"]+)"'
                               r"(.*?)</section>", page, re.S):
        found[section.group(1)] = [
            (stream, html.unescape(text)) for stream, text in re.findall(
                r'<span class="output-line (stdout|stderr)">(.*?)</span>', section.group(2),
                re.S)]
    return found


def test_a_finished_job_shows_every_line_of_every_server_in_order(viewer, client):
    seed(viewer, EVENTS, "failed")

    response = client.get("/jobs/1/output")
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    assert server_lines(page) == LINES
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page
    assert 'data-complete="true"' in page and 'id="output-too-big"' not in page
    s2 = page[page.index('data-host="s2"'):]
    assert "failed step <strong>greet</strong>, exit code 3: step &#39;greet&#39; exited" in s2
    assert 'data-step="greet"' in s2 and "step greet: failed, exit code 3, 0.7 s" in s2
    assert "finished: failed, 2.0 s (1 succeeded, 1 failed)" in page
    assert re.search(r'<a[^>]*href="/jobs/1/log.txt\?host=s2"', page)
    assert 'id="output-running"' not in page
    stamped = client.get("/jobs/1/output?timestamps=1").get_data(as_text=True)
    assert server_lines(stamped) == LINES
    assert '<span class="output-ts">08:00:00.600 </span><span class="output-line stdout">' \
        "hello from s1</span>" in stamped  # the time its batch (seq 6) was stored, UTC
    assert "08:00:00.600" not in page  # no timestamps unless asked


def test_read_in_small_pages_the_lines_are_the_same_and_in_order(viewer, client):
    seed(viewer, EVENTS, "failed")
    viewer.config["MAX_PAGE_BYTES"] = 300  # about one output event per page

    assert server_lines(client.get("/jobs/1/output").get_data(as_text=True)) == LINES


def test_the_job_page_links_to_the_whole_output(viewer, client):
    seed(viewer, EVENTS, "failed")

    page = client.get("/jobs/1").get_data(as_text=True)

    assert re.search(r'<a class="button" id="show-all-output" href="/jobs/1/output">'
                     r"Show all output</a>", page)


def test_over_the_limit_no_line_is_shown_but_the_size_and_the_downloads(viewer, client):
    seed(viewer, EVENTS, "failed")
    from services.job_output import output_size

    with viewer.app_context():
        from extensions import db
        size = output_size(db.session, 1, len(EVENTS))
    viewer.config["PRINT_MAX_BYTES"] = size - 1

    page = client.get("/jobs/1/output").get_data(as_text=True)

    assert server_lines(page) == {"s1": [], "s2": []}
    assert all(line not in page for line in ("hello from s1", "line 150", "boom on s2"))
    assert 'data-complete="false"' in page
    assert f"stored output is {size / 1024:.1f} KiB ({size:,} bytes), more than this page " \
           f"shows ({(size - 1) / 1024:.1f} KiB ({size - 1:,} bytes), " \
           "<code>PATCHBAY_PRINT_MAX_BYTES</code>)" in page
    for link in ("/jobs/1/log.txt", "/jobs/1/log.txt?host=s1", "/jobs/1/log.txt?host=s2"):
        assert f'href="{link}" download' in page
    viewer.config["PRINT_MAX_BYTES"] = size
    assert server_lines(client.get("/jobs/1/output").get_data(as_text=True)) == LINES


def test_the_size_is_the_stored_lines_of_the_output_events(viewer):
    import json

    from extensions import db
    from services.job_output import output_size

    seed(viewer, EVENTS, "failed")

    def stored(events: list[dict]) -> int:
        """The lines as the database keeps them: SQLite's JSON functions give them back
        compact, PostgreSQL's ``json`` as they were written (json.dumps' default)."""
        compact = db.engine.dialect.name == "sqlite"
        return sum(len(json.dumps(e["data"]["lines"],
                                  separators=(",", ":") if compact else None).encode())
                   for e in events if e["type"] == "output")

    with viewer.app_context():
        assert output_size(db.session, 1, len(EVENTS)) == stored(EVENTS)
        assert output_size(db.session, 1, 7) == stored(EVENTS[:7])
        assert output_size(db.session, 1, 5) == 0


def test_a_running_job_shows_what_is_stored_and_says_it_is_still_running(viewer, client):
    seed(viewer, EVENTS[:8], "running")

    page = client.get("/jobs/1/output").get_data(as_text=True)

    assert "This job is still running." in page
    assert "what was stored up to event 8" in page
    assert re.search(r'<a href="/jobs/1">Watch it live on the job page</a>', page)
    assert server_lines(page) == {"s1": [("stdout", line) for line in S1_GREET]
                                  + [("stderr", S1_WARN[0])],
                                  "s2": [("stdout", line) for line in S2_GREET]}


def test_a_pruned_job_says_its_lines_are_gone(viewer, client):
    seed(viewer, [event(1, "events_pruned", days=30, events=18, pruned_at="2027-02-01"),
                  EVENTS[-1] | {"seq": 2}], "failed")

    page = client.get("/jobs/1/output").get_data(as_text=True)

    assert "This job's log was pruned:</strong> events pruned after 30 days (18 " \
        "events removed)." in page
    assert server_lines(page) == {"s1": [], "s2": []}
    assert "exit code 3: step &#39;greet&#39; exited with code 3" in page


def test_params_show_secrets_masked_as_the_job_page_does(viewer, client):
    seed(viewer, EVENTS, "failed")

    page = client.get("/jobs/1/output").get_data(as_text=True)
    job_page = client.get("/jobs/1").get_data(as_text=True)

    assert f"<code>password={MASK}</code>" in page and f"<code>password={MASK}</code>" in job_page
    assert "<code>message=hi</code>" in page
    assert SECRET not in page


def test_an_unknown_job_is_404_and_a_visitor_must_log_in(viewer, client):
    seed(viewer, EVENTS, "failed")

    assert client.get("/jobs/2/output").status_code == 404
    client.post("/logout", data={"csrf_token": _csrf(client)})
    anonymous = client.get("/jobs/1/output")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert "hello from s1" not in anonymous.get_data(as_text=True)


def _csrf(client) -> str:
    from tests.conftest import page_csrf_token

    return page_csrf_token(client)
