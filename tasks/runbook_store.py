"""Runbooks as the engine sees them: the runbook folder, re-read when a file changes."""

from __future__ import annotations

import threading
from pathlib import Path

from tasks.runbooks import Runbook, load_runbooks


class RunbookStore:
    """Loads ``*.yml`` runbooks from a folder, caching them until a file changes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._runbooks: dict[str, Runbook] = {}

    def load(self) -> dict[str, Runbook]:
        """The current runbooks; raises ``RunbookError`` if a file is invalid."""
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                             for p in self.directory.glob("*.y*ml")))
        with self._lock:
            if stamp != self._stamp:
                self._runbooks = load_runbooks(self.directory)
                self._stamp = stamp
            return self._runbooks
