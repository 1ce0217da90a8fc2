"""Quotes and expansions for the placeholder lexer: ``'…'``, ``$'…'`` and backticks
(read to their end in one go), and the frames ``"…"``, ``${…}`` and ``$((…))``, in
which a placeholder's context is the frame's own (:mod:`tasks.planning.shell_lexer`)."""

from __future__ import annotations

from tasks.planning.shell_scan import Frame, Scan


def quoted_span(scan: Scan, begin: int, closer: str, escapes: bool, context: str) -> int:
    """Tag every placeholder up to the unescaped ``closer``; the position after it."""
    text, pos = scan.text, begin
    while pos < len(text) and text[pos] != closer:
        pos += 2 if escapes and text[pos] == "\\" else 1
    end = min(pos, len(text))
    scan.tag_span(begin, end, context)
    return end + 1


# What opens a frame after "$", longest first; any other "$" is a plain character.
_DOLLAR_FRAMES = (("$((", "arith", 2), ("$(", "cmd", 0), ("${", "param", 0))


def dollar(scan: Scan) -> None:
    """``$(``, ``$((``, ``${`` open a frame; any other ``$`` is a plain character."""
    for opener, kind, depth in _DOLLAR_FRAMES:
        if scan.text.startswith(opener, scan.pos):
            scan.frames.append(Frame(kind, depth=depth))
            scan.pos += len(opener)
            return
    scan.pos += 1


def nested(scan: Scan, char: str) -> bool:
    """Quotes and expansions that open inside "…", ${…} and $((…)); whether ``char``
    was one (and has been read)."""
    pos = scan.pos
    if char == "\\":
        scan.pos += 1 if pos + 1 in scan.placeholder_ends else 2
    elif char == "`":
        scan.pos = quoted_span(scan, pos + 1, "`", True, "backticks")
    elif char == "$" and pos + 1 in scan.placeholder_ends:
        scan.pos += 1  # "$" and then a placeholder, in this frame's context
    elif char == "$":
        dollar(scan)
    elif char == '"':
        scan.frames.append(Frame("dq", quote_start=pos))
        scan.pos += 1
    else:
        return False
    return True


def in_double_quotes(scan: Scan, frame: Frame) -> None:
    """One step inside ``"…"``; the closing quote tells the word outside what it holds."""
    char = scan.text[scan.pos]
    if char == '"':
        quoted = scan.frames.pop()
        outer = scan.frames[-1]
        if outer.kind == "cmd" and quoted.quote_start is not None:
            content = scan.text[quoted.quote_start + 1:scan.pos]
            if any(c in content for c in "$`\\"):
                outer.literal = None  # an expansion: maybe empty, unknown
            else:
                outer.add_literal(content)
        scan.pos += 1
    elif not nested(scan, char):
        scan.pos += 1


def in_parameter(scan: Scan, frame: Frame) -> None:
    """One step inside ``${…}``, whose inner braces nest."""
    char = scan.text[scan.pos]
    if char == "}":
        scan.pos += 1
        if frame.depth:
            frame.depth -= 1
        else:
            scan.frames.pop()
    elif char == "{":
        frame.depth += 1
        scan.pos += 1
    elif char == "'":
        scan.pos = quoted_span(scan, scan.pos + 1, "'", False, "parameter expansion")
    elif not nested(scan, char):
        scan.pos += 1


def in_arithmetic(scan: Scan, frame: Frame) -> None:
    """One step inside ``$((…))`` or ``((…))``: it ends where its parentheses balance."""
    char = scan.text[scan.pos]
    if char == "(":
        frame.depth += 1
        scan.pos += 1
    elif char == ")":
        frame.depth -= 1
        scan.pos += 1
        if frame.depth == 0:
            scan.frames.pop()
    elif char == "'":
        scan.pos = quoted_span(scan, scan.pos + 1, "'", False, "arithmetic")
    elif not nested(scan, char):
        scan.pos += 1
