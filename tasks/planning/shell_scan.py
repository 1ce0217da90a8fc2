"""The state of the placeholder lexer (:mod:`tasks.planning.shell_lexer`) over one
template: where it is, the nesting levels open there, the here-documents whose bodies
begin at the next newline, and the context found so far for each placeholder.

The lexer's parts (command words, operators, quotes and expansions, here-documents)
are functions over one :class:`Scan`; each moves ``pos`` past what it has read.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

OPERATOR_CHARS = frozenset(";&|()<>")
BLANKS = frozenset(" \t")

# What the lexer found for a placeholder: its context (None: a plain word of the
# script), the opening quote of double quotes in the script itself, and the command
# (or operator) the context names.
Found = tuple[str | None, int | None, str]


@dataclass
class Frame:
    """A nesting level: the script (``top``) or ``$( … )`` ("cmd"), ``" … "`` ("dq"),
    ``${ … }`` ("param") or ``$(( … ))`` / ``(( … ))`` ("arith")."""

    kind: str
    top: bool = False
    quote_start: int | None = None  # "dq": where its opening quote is
    depth: int = 0  # "param": open inner braces; "arith": open parentheses
    # "cmd" frames only: where the lexer is in the command grammar.
    command_start: bool = True  # the next word starts a simple command
    in_word: bool = False
    word: str = ""  # the current word's raw text (a placeholder counts as "\0")
    word_is_command: bool = False
    word_is_redirect_target: bool = False
    # The current word without its quotes, None once it holds an expansion or a value;
    # and whether it surely holds a character already (a value there does not begin it).
    literal: str | None = ""
    filled: bool = False
    redirect_next: bool = False
    command: str = ""  # the current simple command's name, its quotes removed
    runner: str = ""  # the runner (exec, nohup, …) whose options are being read
    skip_next: bool = False  # the next word is a runner option's argument (exec -a NAME)
    last_argument: str | None = None  # the previous argument, its quotes removed
    options_ended: bool = False  # a "--" argument was seen
    # Inside [[ … ]]: its words (quotes removed) and the placeholders each holds.
    condition: list[tuple[str | None, list[int]]] | None = None
    condition_values: list[int] = field(default_factory=list)
    parens: int = 0  # open ( … ) subshells
    function_name_next: bool = False  # after "function": the name, then a command
    cases: list[str] = field(default_factory=list)  # per open case: where in it we are

    def add_literal(self, chars: str) -> None:
        """Characters the current word surely holds, as they are."""
        if self.literal is not None:
            self.literal += chars
        self.filled = self.filled or bool(chars)

    def case_state(self) -> str | None:
        """Where the innermost open ``case`` is: "subject", "in", "pattern", "body"."""
        return self.cases[-1] if self.cases else None


class Scan:
    """One pass of the lexer over ``text``, whose placeholders are ``matches``
    (``(start, end)`` pairs in order)."""

    def __init__(self, text: str, matches: list[tuple[int, int]]) -> None:
        self.text = text
        self.placeholder_starts = [start for start, _ in matches]
        self.placeholder_ends = dict(matches)  # start -> end
        self.found: dict[int, Found] = {}  # by placeholder start; the first finding holds
        self.pos = 0
        self.frames = [Frame("cmd", top=True)]
        self.heredocs: list[tuple[str, bool]] = []  # (delimiter, strip leading tabs)

    def tag(self, start: int, context: str | None, quote: int | None = None,
            command: str = "") -> None:
        """Record the context of the placeholder at ``start`` (unless it has one)."""
        self.found.setdefault(start, (context, quote, command))

    def tag_span(self, begin: int, end: int, context: str) -> None:
        """Give every placeholder starting in ``[begin, end)`` the ``context``."""
        starts = self.placeholder_starts
        index = bisect.bisect_left(starts, begin)
        while index < len(starts) and starts[index] < end:
            self.tag(starts[index], context)
            index += 1
