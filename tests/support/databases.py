"""A fresh database for each test: a SQLite file in the test's folder, or, when
``DATABASE_URL`` names a PostgreSQL server (``make test-postgres``), a new database of
its own on that server.

PostgreSQL databases made during a test are dropped after it (``tests/conftest.py``
calls :func:`drop_created`), and whatever is left at the end of the session too.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from pathlib import Path

from stack.postgres import create_database, drop_database

_created: list[tuple[str, str]] = []  # (server URL, database name)
_numbers = itertools.count(1)
_RUN = uuid.uuid4().hex[:8]  # two test runs on one server never share a name


def postgres_server() -> str | None:
    """The PostgreSQL server the tests run on (``DATABASE_URL``), or None for SQLite."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


def fresh_database_url(directory: Path, name: str = "patchbay") -> str:
    """The URL of a new, empty database for the current test.

    SQLite: ``directory/<name>.db``. PostgreSQL: a database named after ``name``, this
    run and a counter on the ``DATABASE_URL`` server."""
    server = postgres_server()
    if server is None:
        return f"sqlite:///{Path(directory) / f'{name}.db'}"
    label = re.sub(r"[^a-z0-9_]", "_", name.lower())[:30]
    database = f"test_{_RUN}_{next(_numbers)}_{label}"
    _created.append((server, database))
    return create_database(server, database)


def drop_created() -> None:
    """Drop every database :func:`fresh_database_url` made so far (ending its sessions)."""
    while _created:
        server, database = _created.pop()
        drop_database(server, database)
