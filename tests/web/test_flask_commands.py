"""The ``flask`` commands as an admin runs them, each a real process: against a database
that is not set up (nothing there, an empty file, an older migration) they say so in one
line, exit 1 and create nothing; the README's "From CI" commands work as written in a
folder where ``make run`` wrote its ``.flaskenv`` (demo/flaskenv.py)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from demo import flaskenv
from tests.conftest import PROJECT

HINT = "run `flask --app app db upgrade` (or `make run` for the demo)"
README_CI = re.compile(r"^### From CI\n.*?^```sh\n(.*?)^```\n", re.M | re.S)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of an admin's shell: nothing of the console's own set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PATCHBAY_", "FLASK_")) and k != "DATABASE_URL"}
    return {**env, "PATCHBAY_ASYNC_MODE": "threading", **extra}


def flask(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=120)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def tables(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


@pytest.mark.parametrize("where", ["instance", "database_url"])
def test_a_command_against_no_database_says_so_in_one_line_and_creates_nothing(
        tmp_path, where):
    nothing = tmp_path / "nothing"
    if where == "instance":  # the README's command on a fresh checkout, no make run
        database = nothing / "instance" / "patchbay.db"
        env = clean_env(PATCHBAY_INSTANCE_PATH=str(nothing / "instance"))
    else:
        database = nothing / "db" / "patchbay.db"
        env = clean_env(DATABASE_URL=f"sqlite:///{database}",
                        PATCHBAY_INSTANCE_PATH=str(nothing / "instance"))

    made = flask("create-token", "ci-bot", "--name", "github-actions", "--role", "operator",
                 "--expires-in-days", "90", env=env)
    user = flask("create-user", "ci-bot", "--role", "operator", "--password", "x" * 16,
                 env=env)

    for result in (made, user):
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (f"Error: the database at sqlite:///{database} is not set "
                                 f"up: {HINT}\n")
    assert not nothing.exists(), tree(nothing)  # no folder, no empty database, no key


def test_an_empty_or_older_database_is_refused_and_left_as_it_was(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    older = tmp_path / "older.db"
    head = ScriptDirectory(str(PROJECT / "migrations")).get_current_head()
    before = ScriptDirectory(str(PROJECT / "migrations")).get_revision(head).down_revision
    instance = str(tmp_path / "instance")
    old_env = clean_env(DATABASE_URL=f"sqlite:///{older}", PATCHBAY_INSTANCE_PATH=instance)
    upgraded = flask("db", "upgrade", before, env=old_env)
    assert upgraded.returncode == 0, upgraded.stderr
    users_before = sqlite3.connect(older).execute("SELECT count(*) FROM users").fetchone()

    on_empty = flask("create-user", "ci-bot", "--password", "x" * 16,
                     env=clean_env(DATABASE_URL=f"sqlite:///{empty}",
                                   PATCHBAY_INSTANCE_PATH=instance))
    on_older = flask("create-user", "ci-bot", "--password", "x" * 16, env=old_env)

    assert (on_empty.returncode, on_older.returncode) == (1, 1)
    assert on_empty.stderr == f"Error: the database at sqlite:///{empty} is not set up: {HINT}\n"
    assert on_older.stderr == (f"Error: the database at sqlite:///{older} is at migration "
                               f"{before}, this code needs {head}: run `flask --app app db "
                               "upgrade`\n")
    assert empty.exists() and tables(empty) == []
    assert sqlite3.connect(older).execute("SELECT count(*) FROM users").fetchone() == \
        users_before
    # `flask db` itself is never refused: it is how a database gets set up.
    assert flask("db", "upgrade", env=old_env).returncode == 0
    assert flask("create-user", "ci-bot", "--password", "x" * 16, env=old_env).returncode == 0


def test_the_readme_from_ci_commands_work_as_written_after_make_run(tmp_path):
    """In a project folder as ``make run`` leaves it (its .flaskenv naming the demo's
    instance, the database migrated), the README's block runs as written, with no
    PATCHBAY_* variable set by hand: it makes ci-bot and its token in that database."""
    block = README_CI.search((PROJECT / "README.md").read_text()).group(1)
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / ".venv").symlink_to(PROJECT / ".venv")
    instance = tmp_path / "demo" / "instance"
    assert flaskenv.write(folder / ".flaskenv", instance)
    assert flask("db", "upgrade", env=clean_env(PATCHBAY_INSTANCE_PATH=str(instance))) \
        .returncode == 0
    default_instance = (PROJECT / "instance").exists()

    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=folder,
                         env=clean_env(PYTHONPATH=str(PROJECT)), capture_output=True,
                         text=True, timeout=120)

    assert ran.returncode == 0, ran.stderr
    token = ran.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"pbt_\S+", token), ran.stdout
    assert "user ci-bot (operator) created" in ran.stdout
    with sqlite3.connect(instance / "patchbay.db") as connection:
        made = connection.execute(
            "SELECT users.username, users.role, api_tokens.name, api_tokens.role "
            "FROM api_tokens JOIN users ON users.id = api_tokens.user_id").fetchall()
    assert made == [("ci-bot", "operator", "github-actions", "operator")]
    assert (PROJECT / "instance").exists() == default_instance  # nothing made elsewhere
    # A .flaskenv of someone else's is left alone.
    (folder / ".flaskenv").write_text("FLASK_DEBUG=1\n")
    assert not flaskenv.write(folder / ".flaskenv", instance)
    assert (folder / ".flaskenv").read_text() == "FLASK_DEBUG=1\n"
