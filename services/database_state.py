"""Whether the database is set up, for the ``flask`` commands: migrated to this code's
newest migration, or one line saying it is not and what to run. And what the app made
on the way (an instance folder, an empty SQLite file) when the database turns out not
to be set up, so a command run against the wrong place leaves nothing behind."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

EXTENSION = "patchbay.new_paths"
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
SETUP_HINT = "run `flask --app app db upgrade` (or `make run` for the demo)"


def schema_problem(engine: Engine, migrations: str | Path) -> str | None:
    """None when the database is at the newest migration; else one line saying what
    is wrong (``the database at sqlite:///… is not set up: run …``)."""
    where = engine.url.render_as_string(hide_password=True)
    head = ScriptDirectory(str(migrations)).get_current_head()
    quiet = logging.getLogger("alembic.runtime.migration")  # "Context impl SQLiteImpl."
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # noqa: BLE001 - any driver's refusal, said in one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot open the database at {where}: {reason}"
    finally:
        quiet.setLevel(level)
    if current is None:
        return f"the database at {where} is not set up: {SETUP_HINT}"
    if current != head:
        return (f"the database at {where} is at migration {current}, this code needs "
                f"{head}: run `flask --app app db upgrade`")
    return None


@dataclass
class NewPaths:
    """The paths the app was about to make (they did not exist when it started):
    the instance folder, a SQLite database file and its folder."""

    paths: list[Path] = field(default_factory=list)

    def note(self, *paths: Path | None) -> None:
        """Note each of ``paths`` that is not there yet, after its missing folders."""
        for path in paths:
            if path is None:
                continue
            missing = [p for p in [*reversed(path.parents), path] if not p.exists()]
            self.paths += [p for p in missing if p not in self.paths]

    def remove(self) -> None:
        """Remove them again, newest first: a database file with its companions, a
        folder only with what the app put in it (its secret_key) and only if that
        leaves it empty."""
        for path in reversed(self.paths):
            if path.is_dir():
                (path / "secret_key").unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # something else is in it: keep it
                    path.rmdir()
            else:
                for suffix in SQLITE_COMPANIONS:
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
