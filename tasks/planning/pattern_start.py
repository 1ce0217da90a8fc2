"""Whether a parameter's ``pattern`` lets a value begin with ``-``.

A placeholder where a command reads options (``rm {{ params.f }}``) is safe without a
``--`` only if no valid value can start with ``-``. :func:`may_start_with_dash` answers
that from the regular expression itself, the one :func:`re.fullmatch` checks values
against: it parses the pattern with Python's own parser and collects what its first
character can be, walking sequences, groups, alternatives and repeats (a part that may
match nothing lets the next one start the value). Anchors and lookarounds match no
character. Anything the walk does not know (a back-reference, a conditional group, a
parser laid out otherwise) answers "may", so a doubt always refuses.
"""

from __future__ import annotations

from typing import Any

try:  # The parser behind re.compile: private, so a missing one answers "may".
    from re import _parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - a Python whose re is laid out otherwise
    _parser = None

DASH = ord("-")
_ZERO_WIDTH = frozenset({"AT", "ASSERT", "ASSERT_NOT"})
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
# \d \s \w hold no "-"; their negations do. ("-" has no case: (?i) changes nothing.)
_CATEGORIES = {f"CATEGORY_{uni}{neg}{kind}": bool(neg)
               for uni in ("", "UNI_") for neg in ("", "NOT_")
               for kind in ("DIGIT", "SPACE", "WORD", "LINEBREAK")}


class _Unknown(Exception):
    """A part of the pattern the walk does not know."""


def may_start_with_dash(pattern: str) -> bool:
    """False only if no string starting with ``-`` can fully match ``pattern``."""
    if _parser is None:
        return True
    try:
        starts, _ = _sequence(_parser.parse(pattern))
    except Exception:  # noqa: BLE001 - _Unknown, or whatever a private parser raises
        return True
    return starts


def _sequence(items: Any) -> tuple[bool, bool]:
    """(may the sequence start with "-", may it match the empty string)."""
    for op, argument in items:
        starts, empty = _item(str(op), argument)
        if starts:
            return True, False
        if not empty:
            return False, False
    return False, True


def _item(name: str, argument: Any) -> tuple[bool, bool]:
    if name in _ZERO_WIDTH:
        return False, True
    if name == "LITERAL":
        return argument == DASH, False
    if name == "NOT_LITERAL":
        return argument != DASH, False
    if name == "ANY":
        return True, False
    if name == "IN":
        return _in_class(argument), False
    if name == "SUBPATTERN":
        return _sequence(argument[-1])
    if name == "ATOMIC_GROUP":
        return _sequence(argument)
    if name == "BRANCH":
        results = [_sequence(branch) for branch in argument[1]]
        return any(s for s, _ in results), any(e for _, e in results)
    if name in _REPEATS:
        low, high, body = argument
        if high == 0:
            return False, True
        starts, empty = _sequence(body)
        return starts, empty or low == 0
    if name == "FAILURE":
        return False, False
    raise _Unknown(name)


def _in_class(items: Any) -> bool:
    negate = found = False
    for op, argument in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            found = found or argument == DASH
        elif name == "RANGE":
            found = found or argument[0] <= DASH <= argument[1]
        elif name == "CATEGORY" and str(argument) in _CATEGORIES:
            found = found or _CATEGORIES[str(argument)]
        else:
            raise _Unknown(name)
    return found != negate
