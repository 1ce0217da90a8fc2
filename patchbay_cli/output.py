"""How a followed job is shown: what a renderer does, and which one a command gets —
plain lines for logs and CI (``plain.py``), rich progress bars on a terminal
(``rich_progress.py``). Both get the job's events once each, in ``seq`` order, and say
them in the same words (``story.py``).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from patchbay_cli.plain import PlainRenderer
from patchbay_cli.rich_progress import RichRenderer


class Renderer(Protocol):
    def begin(self, job: dict[str, Any], link: str) -> None:
        """The job as it stands when showing starts (its snapshot), and its page."""

    def show(self, events: list[dict[str, Any]]) -> None:
        """Events, each once, in seq order."""

    def close(self) -> None:
        """Following ended (finished, interrupted or failed)."""


def make_renderer(job_id: int, host: str | None = None, plain: bool = False) -> Renderer:
    """Progress bars on a terminal; plain lines otherwise (or when asked)."""
    if plain or not sys.stdout.isatty():
        return PlainRenderer(job_id, host=host)
    return RichRenderer(job_id, host=host)
