"""The characters of a command frame (the script itself, ``$( … )``), for the
placeholder lexer: each one ends a word, goes on one, opens a quote or an expansion,
or is an operator (``;``, ``&&``, ``|``, ``( )``, redirections, ``;;`` in a case)."""

from __future__ import annotations

from collections.abc import Callable

from tasks.planning.shell_heredocs import heredoc_bodies, heredoc_delimiter
from tasks.planning.shell_quotes import dollar, quoted_span
from tasks.planning.shell_scan import BLANKS, OPERATOR_CHARS, Frame, Scan
from tasks.planning.shell_words import begin_word, end_word, new_command


def in_command(scan: Scan, frame: Frame) -> None:
    """Read the character at ``pos`` of a command frame."""
    char = scan.text[scan.pos]
    if frame.condition is not None and (char in OPERATOR_CHARS or char == "\n"):
        _in_condition(scan, frame, char)
    else:
        _COMMAND_CHARS.get(char, _word_char)(scan, frame)


def _in_condition(scan: Scan, frame: Frame, char: str) -> None:
    """A newline or an operator character inside [[ … ]]."""
    end_word(scan, frame)  # it may be "]]": then the character is the shell's again
    if frame.condition is None:
        return
    if char == "\n":  # [[ … ]] goes on over lines
        scan.pos += 1
    else:
        _condition_operator(scan, frame)


def _condition_operator(scan: Scan, frame: Frame) -> None:
    """``( ) ! < > && ||`` and the like in [[ … ]]: words of the test, not the shell's."""
    text, pos = scan.text, scan.pos
    length = 2 if text.startswith(("&&", "||"), pos) else 1
    assert frame.condition is not None
    frame.condition.append((text[pos:pos + length], []))
    scan.pos += length


def _newline(scan: Scan, frame: Frame) -> None:
    end_word(scan, frame)
    scan.pos += 1
    if frame.case_state() in (None, "body"):
        new_command(frame)
    if scan.heredocs:
        heredoc_bodies(scan)


def _blank(scan: Scan, frame: Frame) -> None:
    end_word(scan, frame)
    scan.pos += 1


def _hash(scan: Scan, frame: Frame) -> None:
    """A comment, to the end of the line; inside a word "#" is a plain character."""
    if frame.in_word:
        _word_char(scan, frame)
        return
    end = scan.text.find("\n", scan.pos)
    end = len(scan.text) if end < 0 else end
    scan.tag_span(scan.pos, end, "comment")
    scan.pos = end


def _backslash(scan: Scan, frame: Frame) -> None:
    text, pos = scan.text, scan.pos
    if text.startswith("\\\n", pos):  # a line continuation joins the lines
        scan.pos += 2
        return
    begin_word(frame)
    if pos + 1 in scan.placeholder_ends:
        scan.tag(pos + 1, "after backslash")
        scan.pos = scan.placeholder_ends[pos + 1]
        frame.word += "\\\0"
        frame.literal = None
    else:
        frame.word += text[pos:pos + 2]
        frame.add_literal(text[pos + 1:pos + 2])
        scan.pos += 2


def _single_quote(scan: Scan, frame: Frame) -> None:
    pos = scan.pos
    begin_word(frame)
    scan.pos = quoted_span(scan, pos + 1, "'", False, "single quotes")
    frame.add_literal(scan.text[pos + 1:scan.pos - 1])
    frame.word += "''"


def _double_quote(scan: Scan, frame: Frame) -> None:
    begin_word(frame)
    frame.word += '""'
    scan.frames.append(Frame("dq", quote_start=scan.pos))
    scan.pos += 1


def _backtick(scan: Scan, frame: Frame) -> None:
    begin_word(frame)
    frame.word += "``"
    frame.literal = None
    scan.pos = quoted_span(scan, scan.pos + 1, "`", True, "backticks")


def _dollar(scan: Scan, frame: Frame) -> None:
    pos = scan.pos
    begin_word(frame)
    frame.word += "$"
    frame.literal = None
    if pos + 1 in scan.placeholder_ends:
        scan.tag(pos + 1, "after dollar")
        scan.pos = scan.placeholder_ends[pos + 1]
    elif scan.text.startswith("$'", pos):
        scan.pos = quoted_span(scan, pos + 2, "'", True, "ansi-c quotes")
    else:
        dollar(scan)


def _operator_char(scan: Scan, frame: Frame) -> None:
    char = scan.text[scan.pos]
    if char in "<>" and frame.in_word and frame.word.isdigit():
        frame.in_word = False  # "2>": a file descriptor number, not a word
    end_word(scan, frame)
    _operator(scan, frame)


def _word_char(scan: Scan, frame: Frame) -> None:
    """Any other character: part of a word, as it is."""
    char = scan.text[scan.pos]
    begin_word(frame)
    frame.word += char
    frame.add_literal(char)
    scan.pos += 1


# -- operators --------------------------------------------------------------------------

def _operator(scan: Scan, frame: Frame) -> None:
    text, pos = scan.text, scan.pos
    char = text[pos]
    if char in "<>" or text.startswith("&>", pos):
        _redirection(scan, frame)
    elif char == "(":
        _open_paren(scan, frame)
    elif char == ")":
        _close_paren(scan, frame)
    elif char == ";":
        _semicolon(scan, frame)
    else:  # & && | || |&
        scan.pos += 2 if text.startswith(("&&", "||", "|&"), pos) else 1
        new_command(frame)


def _redirection(scan: Scan, frame: Frame) -> None:
    """``<``, ``>``, ``>>``, ``&>``, ``>&``, ``<<<`` …: the next word is its target;
    ``<<`` and ``<<-`` begin a here-document."""
    text, pos = scan.text, scan.pos
    if text.startswith("<<<", pos):
        scan.pos += 3
    elif text.startswith("<<", pos):
        strip = text.startswith("<<-", pos)
        scan.pos += 3 if strip else 2
        heredoc_delimiter(scan, strip)
        return
    else:
        scan.pos += 1
        while scan.pos < len(text) and text[scan.pos] in ">&|" and scan.pos - pos < 3:
            scan.pos += 1
    frame.redirect_next = True


def _open_paren(scan: Scan, frame: Frame) -> None:
    """A subshell, ``((`` arithmetic, or the optional "(" before a case pattern."""
    scan.pos += 1
    if frame.case_state() in ("pattern", "in"):
        return  # the optional "(" before a case pattern
    if scan.text.startswith("(", scan.pos) and (frame.command_start
                                                or frame.command == "for"):
        scan.pos += 1
        scan.frames.append(Frame("arith", depth=2))
        return
    frame.parens += 1
    new_command(frame)


def _close_paren(scan: Scan, frame: Frame) -> None:
    """The end of a case pattern, of a subshell, or of the ``$( … )`` frame."""
    scan.pos += 1
    if frame.case_state() == "pattern":
        frame.cases[-1] = "body"
        new_command(frame)
    elif frame.parens:
        frame.parens -= 1
        frame.command_start = True  # "( … ) cmd" is no valid script: refuse there
    elif not frame.top:
        scan.frames.pop()


def _semicolon(scan: Scan, frame: Frame) -> None:
    """``;``, or ``;;``, ``;&``, ``;;&`` ending a case body (the next pattern follows)."""
    text, pos = scan.text, scan.pos
    if text.startswith((";;&", ";;", ";&"), pos):
        scan.pos += 3 if text.startswith(";;&", pos) else 2
        if frame.case_state() == "body":
            frame.cases[-1] = "pattern"
            return
    else:
        scan.pos += 1
    new_command(frame)


_CommandChar = Callable[[Scan, Frame], None]
# What each character that is not part of a plain word does in a command frame.
_COMMAND_CHARS: dict[str, _CommandChar] = {
    "\n": _newline, "#": _hash, "\\": _backslash, "'": _single_quote, '"': _double_quote,
    "`": _backtick, "$": _dollar,
    **dict.fromkeys(BLANKS, _blank), **dict.fromkeys(OPERATOR_CHARS, _operator_char),
}
