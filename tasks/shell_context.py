"""Where each placeholder of a runbook step sits in the step's shell text.

A substituted value is shell-quoted (``shlex.quote``): one literal word, *if* the shell
reads it as a word of the script. Inside double quotes, single quotes, ``$'…'``, a
command substitution, ``${…}``, ``$((…))``, a here-document body or a comment the quotes
of the value are no longer the shell's quoting: ``echo "msg {{ params.m }}"`` with
``m=$(id)`` renders ``echo "msg '$(id)'"`` and runs ``id``.

:func:`placeholder_sites` runs a small POSIX ``sh`` lexer over a step's ``run`` text (the
template, placeholders still in it) and tells for each placeholder the context it sits
in. A placeholder is accepted (context ``None``) only in an unquoted word of the
step's own script — at the top level, or in a ``( … )`` subshell, a ``{ …; }`` group,
an ``if``/``while``/``for``/``case`` body — and not

- in the command name (the first word of a simple command, also after ``exec``,
  ``command``, ``builtin``, ``nohup``, ``setsid`` or ``time``), unless it is the value
  of a leading assignment (``X={{ params.v }}`` is fine): a value there chooses the
  command, and an unquoted ``NAME=value`` would be read as an assignment;
- in an argument of ``eval``, which parses the value again as code;
- glued right after ``\\`` (which escapes the value's opening quote) or ``$``;
- as a here-document delimiter.

So ``cmd {{ params.v }}``, ``releases/{{ params.v }}``, ``--opt={{ params.v }}``,
``a && b {{ params.v }} | c``, ``> {{ params.v }}``, ``for x in {{ params.v }}``,
``case {{ params.v }} in`` and a case pattern ``*,{{ params.v }},*)`` are accepted.

Inside ``$( … )`` a quoted value is parsed again as part of a nested script; POSIX
shells get that right, but the rule stays "top level, unquoted" so that it can be
checked with certainty and read at a glance; copy the value into a variable first.

This is a lexer, not a shell: it does not follow aliases or functions, and it cannot
see a program that treats an argument as code (``sh -c``, ``ssh``, ``sudo``, ``env``,
``xargs``, ``find -exec``, an ``awk`` or ``sed`` script, ``declare``): there the
parameter's pattern is the guard.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

# What each refused context is called in a message, and what to write instead.
CONTEXTS: dict[str, tuple[str, str]] = {
    "double quotes": (
        "inside double quotes",
        'copy it into a variable first (v={{ X }}) and write "$v" there'),
    "single quotes": (
        "inside single quotes",
        "put it outside the quotes, as a word of its own (if the quoted text is a program "
        "for awk, sed or another interpreter, hand the value to it as data, e.g. "
        "V={{ X }} awk '{ print ENVIRON[\"V\"] }')"),
    "ansi-c quotes": (
        "inside $'…' quotes",
        "put it outside the quotes, as a word of its own"),
    "command substitution": (
        "inside a command substitution $(…)",
        'copy it into a variable first (v={{ X }}) and write "$v" there'),
    "backticks": (
        "inside a backtick command substitution `…`",
        'copy it into a variable first (v={{ X }}) and write "$v" there'),
    "parameter expansion": (
        "inside a parameter expansion ${…}",
        'copy it into a variable first (v={{ X }}) and write "$v" there'),
    "arithmetic": (
        "inside an arithmetic expression",
        'copy it into a variable first (v={{ X }}) and write "$v" there'),
    "here-document": (
        "inside a here-document body",
        "copy it into a variable before the here-document (v={{ X }}) and write $v in "
        "the body (with an unquoted delimiter), or print it with printf '%s\\n' \"$v\""),
    "here-document delimiter": (
        "a here-document delimiter",
        "use a fixed delimiter word"),
    "comment": (
        "inside a comment",
        "take it out of the comment (a newline in the value would end the comment and "
        "run the rest)"),
    "after backslash": (
        "right after a backslash, which escapes the value's opening quote",
        "remove the backslash"),
    "after dollar": (
        "right after a $",
        "remove the $ (a value is substituted as it is, not as a variable name)"),
    "command name": (
        "in the command name",
        "name the command in the runbook; if the value must choose it, copy it into a "
        'variable first (v={{ X }}) and run "$v"'),
    "eval": (
        "an argument of eval, which parses it again as code",
        'do not pass it through eval; copy it into a variable (v={{ X }}) and use "$v"'),
    "unknown": (
        "where the checker cannot tell its context",
        "move it to a plain word of the script"),
}

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
# Words after which the next word is a command name again: reserved words, and the
# builtins and programs that run their first argument as the command.
_LEADING_WORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{",
                            "time", "exec", "command", "builtin", "nohup", "setsid"})
_OPERATOR_CHARS = frozenset(";&|()<>")
_BLANKS = frozenset(" \t")


@dataclass(frozen=True)
class PlaceholderSite:
    """One placeholder of a template and the shell context it sits in."""

    start: int
    end: int
    line: int  # 1-based line of ``start`` within the template
    context: str | None  # None: a plain word of the script, where quoting protects it
    quote_start: int | None = None  # the opening ", for double quotes in the script itself

    @property
    def safe(self) -> bool:
        return self.context is None

    def describe(self) -> str:
        """Where it is, as the end of the sentence "{{ params.v }} is ..."."""
        return CONTEXTS[self.context][0] if self.context else "in a plain word"

    def advice(self, template: str) -> str:
        """What to write instead, with the line rewritten where that is mechanical."""
        placeholder = template[self.start:self.end]
        if self.context == "double quotes" and self.quote_start is not None:
            return f"put it outside the quotes: {self._unquoted_line(template)}"
        if self.context is None:
            return ""
        return CONTEXTS[self.context][1].replace("{{ X }}", placeholder)

    def _unquoted_line(self, template: str) -> str:
        assert self.quote_start is not None
        quote = template[self.quote_start]
        placeholder = template[self.start:self.end]
        closes_after = template[self.end:self.end + 1] == quote
        if self.start == self.quote_start + 1:  # "{{ p }} ...": drop the opening quote
            before = template[:self.quote_start]
        else:
            before = template[:self.start] + quote
        after = template[self.end + 1:] if closes_after else quote + template[self.end:]
        fixed = before + placeholder + after
        line_start = fixed.rfind("\n", 0, len(before)) + 1
        line_end = fixed.find("\n", len(before))
        return fixed[line_start:] if line_end < 0 else fixed[line_start:line_end]


def placeholder_sites(template: str, placeholder: re.Pattern[str]) -> list[PlaceholderSite]:
    """Every match of ``placeholder`` in ``template``, with its shell context."""
    return _Lexer(template, placeholder).run()


@dataclass
class _Frame:
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
    redirect_next: bool = False
    command: str = ""  # the current simple command's name
    parens: int = 0  # open ( … ) subshells
    function_name_next: bool = False  # after "function": the name, then a command
    cases: list[str] = field(default_factory=list)  # per open case: where in it we are


class _Lexer:
    def __init__(self, text: str, placeholder: re.Pattern[str]) -> None:
        self.text = text
        self.matches = [(m.start(), m.end()) for m in placeholder.finditer(text)]
        self.starts = [start for start, _ in self.matches]
        self.ends = dict(self.matches)
        self.found: dict[int, tuple[str | None, int | None]] = {}
        self.pos = 0
        self.frames = [_Frame("cmd", top=True)]
        self.heredocs: list[tuple[str, bool]] = []  # (delimiter, strip leading tabs)

    def run(self) -> list[PlaceholderSite]:
        text = self.text
        while self.pos < len(text):
            frame = self.frames[-1]
            if self.pos in self.ends:
                self._placeholder(frame)
            elif frame.kind == "cmd":
                self._in_command(frame)
            elif frame.kind == "dq":
                self._in_double_quotes()
            elif frame.kind == "param":
                self._in_parameter(frame)
            else:
                self._in_arithmetic(frame)
        sites = []
        for start, end in self.matches:
            # A placeholder the lexer never reached (it should not happen) is refused too.
            context, quote = self.found.get(start, ("unknown", None))
            sites.append(PlaceholderSite(start, end, text.count("\n", 0, start) + 1,
                                         context, quote))
        return sites

    # -- placeholders ------------------------------------------------------------------

    def _tag(self, start: int, context: str | None, quote: int | None = None) -> None:
        self.found.setdefault(start, (context, quote))

    def _tag_span(self, begin: int, end: int, context: str) -> None:
        index = bisect.bisect_left(self.starts, begin)
        while index < len(self.starts) and self.starts[index] < end:
            self._tag(self.starts[index], context)
            index += 1

    def _placeholder(self, frame: _Frame) -> None:
        start = self.pos
        self.pos = self.ends[start]
        if frame.kind == "dq":
            outer = self.frames[-2]
            quote = frame.quote_start if outer.kind == "cmd" and outer.top else None
            self._tag(start, "double quotes", quote)
        elif frame.kind == "param":
            self._tag(start, "parameter expansion")
        elif frame.kind == "arith":
            self._tag(start, "arithmetic")
        else:
            self._begin_word(frame)
            if frame.word_is_redirect_target or not frame.word_is_command \
                    or _ASSIGNMENT.match(frame.word):
                context = None
            else:
                context = "command name"
            if context is None and frame.command == "eval" and not frame.word_is_command:
                context = "eval"
            if context is None and not frame.top:
                context = "command substitution"
            self._tag(start, context)
            frame.word += "\0"

    # -- the command grammar -------------------------------------------------------------

    def _case_state(self, frame: _Frame) -> str | None:
        return frame.cases[-1] if frame.cases else None

    def _begin_word(self, frame: _Frame) -> None:
        if frame.in_word:
            return
        frame.in_word = True
        frame.word = ""
        frame.word_is_redirect_target = frame.redirect_next
        frame.word_is_command = (frame.command_start and not frame.redirect_next
                                 and self._case_state(frame) in (None, "body"))

    def _end_word(self, frame: _Frame) -> None:
        if not frame.in_word:
            return
        frame.in_word = False
        word = frame.word
        if frame.word_is_redirect_target:
            frame.redirect_next = False
            return
        if frame.function_name_next:
            frame.function_name_next = False
            frame.command_start = True
            return
        state = self._case_state(frame)
        if state == "subject":
            frame.cases[-1] = "in"
        elif state == "in":
            frame.cases[-1] = "pattern"
        elif state == "pattern":
            if word == "esac":
                frame.cases.pop()
                frame.command_start = False
        elif frame.word_is_command:
            if word in _LEADING_WORDS or _ASSIGNMENT.match(word):
                frame.command_start = True
            elif word == "case":
                frame.cases.append("subject")
                frame.command_start = False
            elif word == "function":
                frame.function_name_next = True
                frame.command_start = False
            elif word == "esac" and frame.cases:
                frame.cases.pop()
                frame.command_start = False
            else:
                frame.command = word
                frame.command_start = False

    def _new_command(self, frame: _Frame) -> None:
        frame.command_start = True
        frame.command = ""
        frame.redirect_next = False

    def _in_command(self, frame: _Frame) -> None:
        text, pos = self.text, self.pos
        char = text[pos]
        if char == "\n":
            self._end_word(frame)
            self.pos += 1
            if self._case_state(frame) in (None, "body"):
                self._new_command(frame)
            if self.heredocs:
                self._heredoc_bodies()
        elif char in _BLANKS:
            self._end_word(frame)
            self.pos += 1
        elif char == "#" and not frame.in_word:
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            self._tag_span(pos, end, "comment")
            self.pos = end
        elif char == "\\":
            if text.startswith("\\\n", pos):  # a line continuation joins the lines
                self.pos += 2
                return
            self._begin_word(frame)
            if pos + 1 in self.ends:
                self._tag(pos + 1, "after backslash")
                self.pos = self.ends[pos + 1]
                frame.word += "\\\0"
            else:
                frame.word += text[pos:pos + 2]
                self.pos += 2
        elif char == "'":
            self._begin_word(frame)
            self.pos = self._quoted_span(pos + 1, "'", False, "single quotes")
            frame.word += "''"
        elif char == '"':
            self._begin_word(frame)
            frame.word += '""'
            self.frames.append(_Frame("dq", quote_start=pos))
            self.pos += 1
        elif char == "`":
            self._begin_word(frame)
            frame.word += "``"
            self.pos = self._quoted_span(pos + 1, "`", True, "backticks")
        elif char == "$":
            self._begin_word(frame)
            frame.word += "$"
            if pos + 1 in self.ends:
                self._tag(pos + 1, "after dollar")
                self.pos = self.ends[pos + 1]
            elif text.startswith("$'", pos):
                self.pos = self._quoted_span(pos + 2, "'", True, "ansi-c quotes")
            else:
                self._dollar()
        elif char in _OPERATOR_CHARS:
            if char in "<>" and frame.in_word and frame.word.isdigit():
                frame.in_word = False  # "2>": a file descriptor number, not a word
            self._end_word(frame)
            self._operator(frame)
        else:
            self._begin_word(frame)
            frame.word += char
            self.pos += 1

    def _operator(self, frame: _Frame) -> None:
        text, pos = self.text, self.pos
        char = text[pos]
        state = self._case_state(frame)
        if char in "<>" or text.startswith("&>", pos):
            if text.startswith("<<<", pos):
                self.pos += 3
            elif text.startswith("<<", pos):
                strip = text.startswith("<<-", pos)
                self.pos += 3 if strip else 2
                self._heredoc_delimiter(strip)
                return
            else:
                self.pos += 1
                while self.pos < len(text) and text[self.pos] in ">&|" \
                        and self.pos - pos < 3:
                    self.pos += 1
            frame.redirect_next = True
        elif char == "(":
            self.pos += 1
            if state in ("pattern", "in"):
                return  # the optional "(" before a case pattern
            if text.startswith("(", self.pos) and frame.command_start:
                self.pos += 1
                self.frames.append(_Frame("arith", depth=2))
                return
            frame.parens += 1
            self._new_command(frame)
        elif char == ")":
            self.pos += 1
            if state == "pattern":
                frame.cases[-1] = "body"
                self._new_command(frame)
            elif frame.parens:
                frame.parens -= 1
                frame.command_start = True  # "( … ) cmd" is no valid script: refuse there
            elif not frame.top:
                self.frames.pop()
        elif char == ";":
            if text.startswith((";;&", ";;", ";&"), pos):
                self.pos += 3 if text.startswith(";;&", pos) else 2
                if state == "body":
                    frame.cases[-1] = "pattern"
                    return
            else:
                self.pos += 1
            self._new_command(frame)
        else:  # & && | || |&
            self.pos += 2 if text.startswith(("&&", "||", "|&"), pos) else 1
            self._new_command(frame)

    # -- quotes, expansions, here-documents ----------------------------------------------

    def _quoted_span(self, begin: int, closer: str, escapes: bool, context: str) -> int:
        """Tag every placeholder up to the unescaped ``closer``; the position after it."""
        text, pos = self.text, begin
        while pos < len(text) and text[pos] != closer:
            pos += 2 if escapes and text[pos] == "\\" else 1
        end = min(pos, len(text))
        self._tag_span(begin, end, context)
        return end + 1

    def _dollar(self) -> None:
        """``$(``, ``$((``, ``${`` open a frame; any other ``$`` is a plain character."""
        text, pos = self.text, self.pos
        if text.startswith("$((", pos):
            self.frames.append(_Frame("arith", depth=2))
            self.pos += 3
        elif text.startswith("$(", pos):
            self.frames.append(_Frame("cmd"))
            self.pos += 2
        elif text.startswith("${", pos):
            self.frames.append(_Frame("param"))
            self.pos += 2
        else:
            self.pos += 1

    def _nested(self, char: str) -> bool:
        """Quotes and expansions that open inside "…", ${…} and $((…))."""
        pos = self.pos
        if char == "\\":
            self.pos += 1 if pos + 1 in self.ends else 2
        elif char == "`":
            self.pos = self._quoted_span(pos + 1, "`", True, "backticks")
        elif char == "$" and pos + 1 in self.ends:
            self.pos += 1  # "$" and then a placeholder, in this frame's context
        elif char == "$":
            self._dollar()
        elif char == '"':
            self.frames.append(_Frame("dq", quote_start=pos))
            self.pos += 1
        else:
            return False
        return True

    def _in_double_quotes(self) -> None:
        char = self.text[self.pos]
        if char == '"':
            self.frames.pop()
            self.pos += 1
        elif not self._nested(char):
            self.pos += 1

    def _in_parameter(self, frame: _Frame) -> None:
        char = self.text[self.pos]
        if char == "}":
            self.pos += 1
            if frame.depth:
                frame.depth -= 1
            else:
                self.frames.pop()
        elif char == "{":
            frame.depth += 1
            self.pos += 1
        elif char == "'":
            self.pos = self._quoted_span(self.pos + 1, "'", False, "parameter expansion")
        elif not self._nested(char):
            self.pos += 1

    def _in_arithmetic(self, frame: _Frame) -> None:
        char = self.text[self.pos]
        if char == "(":
            frame.depth += 1
            self.pos += 1
        elif char == ")":
            frame.depth -= 1
            self.pos += 1
            if frame.depth == 0:
                self.frames.pop()
        elif char == "'":
            self.pos = self._quoted_span(self.pos + 1, "'", False, "arithmetic")
        elif not self._nested(char):
            self.pos += 1

    def _heredoc_delimiter(self, strip: bool) -> None:
        """Read the delimiter word after ``<<``; its body starts at the next newline."""
        text = self.text
        while self.pos < len(text) and text[self.pos] in _BLANKS:
            self.pos += 1
        delimiter = []
        while self.pos < len(text):
            pos = self.pos
            if pos in self.ends:
                self._tag(pos, "here-document delimiter")
                delimiter.append(text[pos:self.ends[pos]])
                self.pos = self.ends[pos]
                continue
            char = text[pos]
            if char in _BLANKS or char == "\n" or char in _OPERATOR_CHARS:
                break
            if char in "'\"":
                end = text.find(char, pos + 1)
                end = len(text) if end < 0 else end
                self._tag_span(pos + 1, end, "here-document delimiter")
                delimiter.append(text[pos + 1:end].replace("\\", "") if char == '"'
                                 else text[pos + 1:end])
                self.pos = end + 1
            elif char == "\\":
                delimiter.append(text[pos + 1:pos + 2])
                self.pos += 2
            else:
                delimiter.append(char)
                self.pos += 1
        self.heredocs.append(("".join(delimiter), strip))

    def _heredoc_bodies(self) -> None:
        """Skip the bodies of the here-documents begun on the line that just ended."""
        text = self.text
        for delimiter, strip in self.heredocs:
            while self.pos < len(text):
                end = text.find("\n", self.pos)
                end = len(text) if end < 0 else end
                line = text[self.pos:end]
                if (line.lstrip("\t") if strip else line) == delimiter:
                    self.pos = min(end + 1, len(text))
                    break
                self._tag_span(self.pos, end, "here-document")
                self.pos = end + 1
        self.pos = min(self.pos, len(text))
        self.heredocs.clear()
