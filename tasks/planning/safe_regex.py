"""Runbook regular expressions (a parameter's ``pattern``, a wait step's ``until``),
compiled and matched by RE2.

Whoever writes a runbook writes these, and they are matched on the console's one
event-loop thread against text an operator types or a server prints. Python's ``re``
backtracks: ``^(a|aa)+$`` against 36 ``a`` and a ``b`` took seconds, every other request
waiting meanwhile, and each more character doubles it. RE2 (``google-re2``) matches in
time linear in the text and refuses what it cannot run that way (back-references,
lookaround): :func:`check` says so when the runbook is loaded. Linear is still per
character, so the text is cut to :data:`MAX_MATCHED_CHARS` first.

The syntax is Python's for everything else, with one exception refused here:
POSIX classes (``[[:alpha:]]``), which Python reads as a plain set of the characters
``[:alph`` while RE2 reads the class; :mod:`tasks.planning.pattern_start` judges a pattern with
Python's parser, so the two must agree on what a pattern accepts.
"""

from __future__ import annotations

import re
from functools import lru_cache

import re2

# Of a text, the characters a pattern is matched against: a wait step's probe output
# beyond this is not searched (RE2 takes time linear in the text; 64 Ki characters is
# far more than any status a probe prints, and a fraction of a millisecond to search).
MAX_MATCHED_CHARS = 65_536

_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported by check(), not to stderr


def check(pattern: str) -> str:
    """``pattern`` if RE2 can run it; else ValueError saying why (for a validator)."""
    if _POSIX_CLASS.search(pattern):
        raise ValueError("POSIX classes such as [:alpha:] are not supported; write the "
                         "characters out (a-zA-Z)")
    try:
        _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        raise ValueError(f"not a regular expression RE2 can run ({reason}): RE2 has no "
                         "back-references or lookaround, and counts repeats up to 1000"
                         ) from None
    return pattern


def fullmatch(pattern: str, text: str) -> bool:
    """Whether all of ``text`` (cut to :data:`MAX_MATCHED_CHARS`) matches ``pattern``."""
    return _compiled(pattern).fullmatch(text[:MAX_MATCHED_CHARS]) is not None


def search_lines(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (cut to
    :data:`MAX_MATCHED_CHARS`), ``^`` and ``$`` matching at every line."""
    return _compiled(f"(?m){pattern}").search(text[:MAX_MATCHED_CHARS]) is not None


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re2._Regexp:
    return re2.compile(pattern, _OPTIONS)
