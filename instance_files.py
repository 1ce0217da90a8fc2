"""The instance folder and the SQLite database are private to the console's account.

They hold the session secret, password hashes, sealed job secrets, webhook secrets and
the jobs' logs, so no other local account may read them, whatever the umask the console
was started with (the systemd unit sets ``UMask=0077``; ``make demo``, ``flask`` commands
and ``python app.py`` do not). SQLite creates its ``-wal`` and ``-shm`` files with the
database file's mode, so a database file made 0600 before SQLite opens it keeps them
private too. Files and folders left readable by an earlier version are tightened at
start-up, with an INFO line saying so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger("patchbay.instance")

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def secure_instance(instance_path: str, database_uri: str) -> None:
    """Make the instance folder 0700 and the SQLite database (created empty if it is
    not there yet) and its companions and ``secret_key`` 0600."""
    folder = Path(instance_path)
    if folder.is_dir():
        _tighten(folder, 0o700)
        _tighten(folder / "secret_key", 0o600)
    database = sqlite_file(database_uri)
    if database is None:
        return
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # An empty file is a valid new database; SQLite gives -wal/-shm this file's mode.
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in SQLITE_COMPANIONS:
        _tighten(database.with_name(database.name + suffix), 0o600)


def sqlite_file(database_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for other databases or memory."""
    url = make_url(database_uri)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None  # a URI filename: SQLite's own options decide
    return Path(url.database).resolve()


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & ~mode:
        path.chmod(current & mode)
        log.info("%s was readable by other accounts (mode %o): now %o", path, current,
                 current & mode)
