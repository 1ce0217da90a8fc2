"""The refusal for a runbook name that names no runbook, with the close match if any."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from tasks.errors import PatchbayError


def close_runbook(name: str, known: Iterable[str]) -> str | None:
    """The known runbook name closest to ``name`` (a typo of it), or None."""
    matches = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_runbook(name: object, known: Iterable[str]) -> PatchbayError:
    """``unknown_runbook`` on field ``runbook``: "no runbook named 'game-updat' (did you
    mean game-update?)", the question only when a known name is close."""
    message = f"no runbook named {name!r}"
    match = close_runbook(str(name), known)
    if match is not None:
        message += f" (did you mean {match}?)"
    return PatchbayError("unknown_runbook", message, "runbook")
