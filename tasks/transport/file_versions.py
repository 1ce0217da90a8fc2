"""Values read from a file, kept until the file changes.

A fleet shares a few private keys and one known_hosts file; reading and parsing them
once per connection was a measurable part of a fan-out (:mod:`tasks.transport.client_keys`,
:mod:`tasks.transport.host_keys`). A file's version is its inode, mtime and size: a
file replaced, touched or appended to is read again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

FileVersion = tuple[int, int, int]  # inode, mtime (ns), size


def per_file_version(cache: dict[Path, tuple[FileVersion, Any]], path: Path,
                     load: Callable[[Path], Any]) -> Any:
    """``load(path)``, kept in ``cache`` until the file changes (``path.stat()`` may
    raise ``OSError``)."""
    stat = path.stat()
    version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = cache.get(path)
    if cached is None or cached[0] != version:
        cached = (version, load(path))
        cache[path] = cached
    return cached[1]
