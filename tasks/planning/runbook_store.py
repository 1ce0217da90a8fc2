"""Runbooks as the engine sees them: the runbook folder, re-read when a file changes."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from tasks.planning.runbook_files import load_runbooks
from tasks.planning.runbooks import Runbook


class RunbookStore:
    """Loads ``*.yml`` runbooks from a folder, caching them until a file changes."""

    def __init__(self, directory: str | Path,
                 on_change: Callable[[dict[str, list[str]]], None] | None = None) -> None:
        self.directory = Path(directory)
        self.on_change = on_change
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._runbooks: dict[str, Runbook] = {}
        self._digests: dict[str, str] | None = None

    def load(self) -> dict[str, Runbook]:
        """The current runbooks; raises ``RunbookError`` if a file is invalid."""
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                             for p in self.directory.glob("*.y*ml")))
        with self._lock:
            if stamp != self._stamp:
                self._runbooks = load_runbooks(self.directory)
                self._stamp = stamp
                self._report_changes()
            return self._runbooks

    def _report_changes(self) -> None:
        """Tell ``on_change`` which runbooks were added, changed or removed since the
        previous load (not on the first load)."""
        digests = {name: hashlib.sha256(book.spec.model_dump_json().encode()).hexdigest()
                   for name, book in self._runbooks.items()}
        previous, self._digests = self._digests, digests
        if previous is None or self.on_change is None:
            return
        changes = {
            "added": sorted(set(digests) - set(previous)),
            "removed": sorted(set(previous) - set(digests)),
            "changed": sorted(n for n in set(digests) & set(previous)
                              if digests[n] != previous[n]),
        }
        if any(changes.values()):
            self.on_change(changes)
