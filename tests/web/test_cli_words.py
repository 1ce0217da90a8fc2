"""The ``patchbay`` CLI's words, as a real subprocess against a real console over the
demo fleet: a runbook name with a typo gets the close match; ``show`` and ``jobs``
print every parameter whole (wrapped to ``COLUMNS`` or the terminal, on one line
without either) and ``show`` says the strategy in the job page's words."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, PROJECT
from tests.support.live_server import LiveServer, start_live_server
from tests.web.test_cli import cli_env, flask_command, patchbay

STRATEGIES = [
    {"parallel": 2},
    {"parallel": 2, "batches": [1, "100%"], "max_failures": 1, "timeout": 120.0},
    {"parallel": 3, "batches": ["25%"], "max_failures": "10%", "gate": "manual"},
    {"parallel": 1, "max_failures": 0, "timeout": 30, "gate": {"soak": 5.0}},
    {"parallel": 4, "gate": "auto"},
]


@pytest.fixture(scope="module")
def console(tmp_path_factory, demo_fleet) -> LiveServer:
    """A console over the demo fleet with the demo's game-update."""
    directory = tmp_path_factory.mktemp("cli-words")
    books = directory / "runbooks"
    books.mkdir()
    shutil.copy(PROJECT / "runbooks" / "game-update.yml", books)
    server = start_live_server(directory / "live", inventory=Path(demo_fleet["inventory"]),
                               runbook_dir=books, users=[("alice", PASSWORD, "operator")])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(console, tmp_path_factory) -> dict[str, str]:
    """The CLI's environment with alice's token, and no COLUMNS from outside."""
    made = flask_command(console, "create-token", "alice", "--name", "words")
    assert made.returncode == 0, made.stderr
    home = tmp_path_factory.mktemp("cli-words-home")
    given = cli_env(home, PATCHBAY_URL=console.url,
                    PATCHBAY_TOKEN=made.stdout.strip().splitlines()[-1])
    given.pop("COLUMNS", None)
    return given


@pytest.fixture(scope="module")
def finished_job(env) -> int:
    """A game-update of two servers in two batches, followed to its end."""
    ran = patchbay("run", "game-update", "-p", "version=1.4.10", "-p", "fast=true",
                   "--servers", "gs-01,gs-02", "--parallel", "2", "--batches", "1,100%",
                   "--max-failures", "1", "--timeout", "120", "--follow", env=env)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr
    return int(re.search(r"^job #(\d+) succeeded", ran.stdout, re.M).group(1))


PARAMS = {"version=1.4.10", "fast=true", "drain_timeout=300"}


@pytest.mark.live
def test_a_runbook_name_with_a_typo_gets_the_close_match(env):
    typo = patchbay("run", "game-updat", "-p", "version=1.4.10", "--servers", "gs-01",
                    env=env)
    far = patchbay("run", "nothing-like-it", "--servers", "gs-01", env=env)
    listed = patchbay("jobs", env=env)

    assert (typo.returncode, far.returncode) == (3, 3)
    assert "no runbook named 'game-updat' (did you mean game-update?)" in typo.stderr
    assert "unknown_runbook" in typo.stderr or "runbook" in typo.stderr
    assert "no runbook named 'nothing-like-it'" in far.stderr
    assert "did you mean" not in far.stderr
    assert listed.stdout.split() == ["JOB", "STATUS", "RUNBOOK", "SERVERS", "BY", "CREATED",
                                     "(UTC)", "PARAMS"]  # nothing was started


def params_lines(shown: str) -> list[str]:
    """The ``params:`` line of ``patchbay show`` and the lines it wraps onto."""
    lines = shown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  params: "))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 10))
    return lines[start:end]


@pytest.mark.live
def test_show_prints_every_parameter_whole_and_the_strategy_in_words(env, finished_job):
    plain = patchbay("show", str(finished_job), env=env)
    narrow = patchbay("show", str(finished_job), env={**env, "COLUMNS": "34"})

    assert (plain.returncode, narrow.returncode) == (0, 0), plain.stderr + narrow.stderr
    assert "…" not in plain.stdout + narrow.stdout
    # No terminal, no COLUMNS: one line, every parameter on it.
    [line] = params_lines(plain.stdout)
    assert set(line.removeprefix("  params: ").split(" ")) == PARAMS
    # COLUMNS=34: wrapped between parameters, under the first, none cut.
    wrapped = params_lines(narrow.stdout)
    assert len(wrapped) >= 2 and all(len(line) <= 34 for line in wrapped), wrapped
    assert {word for line in wrapped for word in line.split()} - {"params:"} == PARAMS
    for text in (plain.stdout, narrow.stdout):
        assert "\n  strategy: 2 at once, batches 1, 100%, stop after 1 failure(s), " \
               "step timeout 120.0 s\n" in text
        assert "{" not in text


@pytest.mark.live
def test_jobs_wraps_the_parameters_column_between_parameters(env, finished_job):
    plain = patchbay("jobs", env=env)
    wide = patchbay("jobs", env={**env, "COLUMNS": "100"})

    assert (plain.returncode, wide.returncode) == (0, 0)
    header, row, *more = plain.stdout.splitlines()
    assert header.split() == ["JOB", "STATUS", "RUNBOOK", "SERVERS", "BY", "CREATED",
                              "(UTC)", "PARAMS"] and more == []
    assert row.split()[:5] == [str(finished_job), "succeeded", "game-update", "2", "alice"]
    assert set(row.split()[-3:]) == PARAMS and "…" not in row
    lines = wide.stdout.splitlines()
    assert len(lines) > 2 and all(len(line) <= 100 for line in lines), lines
    column = header.index("PARAMS")
    cells = [line[column:] for line in lines[1:]]
    assert {word for cell in cells for word in cell.split()} == PARAMS
    assert all(line[:column].strip() == "" for line in lines[2:])  # the same row, wrapped


@pytest.fixture
def jobs_of_every_strategy(app, auth):
    """alice and one job per strategy of STRATEGIES, as the job page reads them."""
    from extensions import db
    from models import Job
    from tasks.rollout.strategy import Strategy

    auth.create("alice")
    with app.app_context():
        for given in STRATEGIES:  # stored as planning stores them: every field
            strategy = Strategy(**given).model_dump()
            db.session.add(Job(runbook="basic", params={"message": "hi"}, strategy=strategy,
                               status="succeeded", created_by_id=1, last_seq=0))
        db.session.commit()
    auth.login()
    return app


def test_the_strategy_is_said_as_the_job_page_says_it(jobs_of_every_strategy, client):
    from patchbay_cli.tables import strategy_words
    from tasks.rollout.strategy import Strategy

    said = []
    for job_id, strategy in enumerate(STRATEGIES, start=1):
        page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
        match = re.search(r'<dd id="job-strategy">(.*?)</dd>', page, re.S)
        said.append((" ".join(match.group(1).split()),
                     strategy_words(Strategy(**strategy).model_dump())))

    assert [page for page, _ in said] == [cli for _, cli in said]
    assert said[1][1] == "2 at once, batches 1, 100%, stop after 1 failure(s), " \
                         "step timeout 120.0 s"
    assert said[3][1] == "1 at once, stop after 0 failure(s), step timeout 30 s, " \
                         "a 5.0 s soak and health checks between batches"
