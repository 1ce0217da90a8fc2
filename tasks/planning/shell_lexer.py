"""A small POSIX ``sh`` lexer that finds the shell context of each placeholder in a
step's ``run`` text (the rules: :mod:`tasks.planning.shell_context`).

It reads the text once, one character (or token) at a time, in the innermost open
frame: a command frame (the script, ``$( … )``: :mod:`~tasks.planning.shell_commands`,
its words :mod:`~tasks.planning.shell_words`), double quotes, ``${ … }`` or arithmetic
(:mod:`~tasks.planning.shell_quotes`); here-documents are
:mod:`~tasks.planning.shell_heredocs`. A placeholder takes the context of where it
begins; the first context found for it holds.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.planning.shell_commands import in_command
from tasks.planning.shell_quotes import in_arithmetic, in_double_quotes, in_parameter
from tasks.planning.shell_scan import Found, Frame, Scan
from tasks.planning.shell_words import end_word, value_in_word

# How the lexer reads a character in each kind of frame.
_READERS: dict[str, Callable[[Scan, Frame], None]] = {
    "cmd": in_command, "dq": in_double_quotes, "param": in_parameter, "arith": in_arithmetic,
}
# The context of a placeholder met in a frame that is no command frame.
_FRAME_CONTEXTS = {"param": "parameter expansion", "arith": "arithmetic"}


def find_contexts(text: str, matches: list[tuple[int, int]]) -> dict[int, Found]:
    """What the lexer found for each placeholder of ``text`` (``matches``: their
    ``(start, end)``, in order), by start; one it never reached is missing."""
    scan = Scan(text, matches)
    while scan.pos < len(text):
        frame = scan.frames[-1]
        if scan.pos in scan.placeholder_ends:
            _placeholder(scan, frame)
        else:
            _READERS[frame.kind](scan, frame)
    if scan.frames[-1].kind == "cmd":
        end_word(scan, scan.frames[-1])  # the last word, "]]" say, ends with the text
    return scan.found


def _placeholder(scan: Scan, frame: Frame) -> None:
    """The placeholder at ``pos``: its context is where it sits; skip over it."""
    start = scan.pos
    scan.pos = scan.placeholder_ends[start]
    if frame.kind == "dq":
        outer = scan.frames[-2]
        quote = frame.quote_start if outer.kind == "cmd" and outer.top else None
        scan.tag(start, "double quotes", quote)
    elif frame.kind in _FRAME_CONTEXTS:
        scan.tag(start, _FRAME_CONTEXTS[frame.kind])
    else:
        value_in_word(scan, frame, start)
