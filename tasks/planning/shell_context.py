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
  ``command``, ``builtin``, ``nohup``, ``setsid``, ``time``, ``coproc``, ``.`` or
  ``source`` and their options), unless it is the value of a leading assignment
  (``X={{ params.v }}`` is fine): a value there chooses the command, and an unquoted
  ``NAME=value`` would be read as an assignment;
- in an argument of ``eval``, which parses the value again as code;
- in an argument of a builtin that evaluates it: ``let`` (arithmetic), ``trap`` (its
  action is code), the declaration builtins ``declare``, ``typeset``, ``local``,
  ``export`` and ``readonly`` (a value becomes ``NAME=value`` or an option, and bash
  evaluates a ``[subscript]`` or an ``-i`` variable's value as arithmetic), builtins
  that take variable names (``unset``, ``read``, ``mapfile``, ``readarray``, the
  operand of ``-v``/``-R`` in ``test``, ``[`` and ``[[ ]]``, ``printf -v``: bash
  evaluates ``a[$(id)]`` there and runs ``id``), and ``alias``, ``compgen``,
  ``complete``, ``bind``, ``fc``, ``enable``;
- as an operand of ``-eq``, ``-ne``, ``-lt``, ``-le``, ``-gt`` or ``-ge`` in bash's
  ``[[ … ]]``, which evaluates it as arithmetic (``[ … ]`` does not);
- glued right after ``\\`` (which escapes the value's opening quote) or ``$``;
- as a here-document delimiter.

A placeholder that begins an argument of a command before any ``--`` argument sits
where the command reads options (``rm {{ params.f }}`` with ``f=-rf``): its context is
``"option"``, which the caller accepts only where no valid value can start with ``-``
(the parameter's pattern says so, :mod:`tasks.planning.pattern_start`).

So ``cmd -- {{ params.v }}``, ``releases/{{ params.v }}``, ``--opt={{ params.v }}``,
``a && b -- {{ params.v }} | c``, ``> {{ params.v }}``, ``for x in {{ params.v }}``,
``case {{ params.v }} in``, a case pattern ``*,{{ params.v }},*)`` and
``[[ {{ params.v }} == x ]]`` are accepted.

Inside ``$( … )`` a quoted value is parsed again as part of a nested script; POSIX
shells get that right, but the rule stays "top level, unquoted" so that it can be
checked with certainty and read at a glance; copy the value into a variable first.

This is a lexer, not a shell: it does not follow aliases, functions or a command name
held in a variable (``$cmd {{ params.v }}``), it does not know which option of a
command takes an argument (``grep -e -- {{ params.v }}`` counts as after ``--``), and
it cannot see a program that treats an argument as code (``sh -c``, ``ssh``, ``sudo``,
``env``, ``xargs``, ``find -exec``, an ``awk`` or ``sed`` script): there the
parameter's pattern is the guard. Nor does it follow a value once copied into a
variable: under bash, ``v={{ params.n }}; echo $((v + 1))`` (or ``[[ $v -eq 1 ]]``,
``let``, an ``-i`` variable) evaluates it as arithmetic, so a variable used there needs
a digits-only pattern.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

# A number copied into a variable is safe in arithmetic only if it is digits only.
NUMBER_ADVICE = ("give the parameter a digits-only pattern (^[0-9]+$), copy it into a "
                 "variable first (n={{ X }}) and write $n there")
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
        NUMBER_ADVICE),
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
    "let": (
        "an argument of let, which evaluates it as arithmetic (under bash a value like "
        "a[$(id)] runs id)",
        NUMBER_ADVICE),
    "conditional arithmetic": (
        "an operand of {command} in [[ … ]], which bash evaluates as arithmetic (a value "
        "like a[$(id)] runs id)",
        "compare with [ … {command} … ] instead, which takes plain numbers only (and give "
        "the parameter a pattern that cannot start with -)"),
    "trap": (
        "an argument of trap, whose action the shell runs as code",
        "write the action in the runbook (trap 'cleanup' EXIT) and let it read the value "
        "from a variable"),
    "declaration": (
        "an argument of {command}, which reads it as NAME=value or as an option (a value "
        "such as PATH=… or -f) and under bash evaluates a [subscript] as arithmetic",
        "assign the variable on a line of its own (NAME={{ X }}), then {command} NAME"),
    "variable name": (
        "an argument of {command}, which bash reads as a variable name and evaluates a "
        "[subscript] in it as arithmetic (a value like a[$(id)] runs id)",
        "name the variable in the runbook and put the value in it (NAME={{ X }})"),
    "builtin code": (
        "an argument of {command}, which the shell can run as code",
        "keep the value out of it: write the code in the runbook and let it read the "
        "value from a variable (v={{ X }})"),
    "option": (
        "an argument of {command} before any --, where a value starting with - is read "
        "as an option",
        "add -- before it ({command} -- {{ X }}), or give the parameter a pattern that "
        "cannot start with -"),
    "unknown": (
        "where the checker cannot tell its context",
        "move it to a plain word of the script"),
}

# Commands that take no "--": what to write instead of adding one.
NO_DOUBLE_DASH = {
    "echo": "echo takes no --: write printf -- '%s\\n' {{ X }}, or give the parameter a "
            "pattern that cannot start with -",
    **dict.fromkeys(("[", "test"), "{command} takes no --: give the parameter a pattern "
                    "that cannot start with -, or test a copy of the value (v={{ X }}, "
                    "then \"$v\")"),
}

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
# Reserved words after which the next word is a command name again (unquoted only).
_LEADING_WORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{"})
# Builtins and programs that run their first non-option argument as the command (or,
# for "." and "source", as a script), quoted or not.
_RUNNERS = frozenset({"time", "exec", "command", "builtin", "nohup", "setsid", "coproc",
                      ".", "source"})
# Builtins whose every argument is refused, and why (a CONTEXTS key).
_EVALUATING = {"eval": "eval", "let": "let", "trap": "trap",
               **dict.fromkeys(("declare", "typeset", "local", "export", "readonly"),
                               "declaration"),
               **dict.fromkeys(("unset", "read", "mapfile", "readarray"), "variable name"),
               **dict.fromkeys(("alias", "compgen", "complete", "bind", "fc", "enable"),
                               "builtin code")}
# Options after which the next argument is a variable name bash evaluates.
_NAME_OPTIONS = {"test": ("-v", "-R"), "[": ("-v", "-R"), "printf": ("-v",)}
# [[ … ]] operators whose operands bash evaluates as arithmetic, or as variable names.
_COND_ARITHMETIC = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_COND_NAMES = frozenset({"-v", "-R"})
# Words whose arguments are a word list, not options.
_WORD_LISTS = frozenset({"for", "select"})
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
    command: str = ""  # the command (or operator) the context names, if it names one

    @property
    def safe(self) -> bool:
        return self.context is None

    def describe(self) -> str:
        """Where it is, as the end of the sentence "{{ params.v }} is ..."."""
        if not self.context:
            return "in a plain word"
        return CONTEXTS[self.context][0].replace("{command}", self.command)

    def advice(self, template: str) -> str:
        """What to write instead, with the line rewritten where that is mechanical."""
        placeholder = template[self.start:self.end]
        if self.context == "double quotes" and self.quote_start is not None:
            return f"put it outside the quotes: {self._unquoted_line(template)}"
        if self.context is None:
            return ""
        advice = CONTEXTS[self.context][1]
        if self.context == "option" and self.command in NO_DOUBLE_DASH:
            advice = NO_DOUBLE_DASH[self.command]
        return advice.replace("{command}", self.command).replace("{{ X }}", placeholder)

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


class _Lexer:
    def __init__(self, text: str, placeholder: re.Pattern[str]) -> None:
        self.text = text
        self.matches = [(m.start(), m.end()) for m in placeholder.finditer(text)]
        self.starts = [start for start, _ in self.matches]
        self.ends = dict(self.matches)
        self.found: dict[int, tuple[str | None, int | None, str]] = {}
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
        if self.frames[-1].kind == "cmd":
            self._end_word(self.frames[-1])  # the last word, "]]" say, ends with the text
        sites = []
        for start, end in self.matches:
            # A placeholder the lexer never reached (it should not happen) is refused too.
            context, quote, command = self.found.get(start, ("unknown", None, ""))
            sites.append(PlaceholderSite(start, end, text.count("\n", 0, start) + 1,
                                         context, quote, command))
        return sites

    # -- placeholders ------------------------------------------------------------------

    def _tag(self, start: int, context: str | None, quote: int | None = None,
             command: str = "") -> None:
        self.found.setdefault(start, (context, quote, command))

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
            if frame.condition is not None:  # told at "]]", by the words around it
                frame.condition_values.append(start)
            else:
                context, command = self._word_context(frame)
                if not frame.top:
                    context, command = "command substitution", ""
                self._tag(start, context, None, command)
            frame.word += "\0"
            frame.literal = None

    def _word_context(self, frame: _Frame) -> tuple[str | None, str]:
        """The context of a value in the current word of a command frame."""
        if frame.word_is_redirect_target or frame.skip_next:
            return None, ""
        if frame.word_is_command:
            return (None if _ASSIGNMENT.match(frame.word) else "command name"), ""
        if self._case_state(frame) not in (None, "body") or frame.function_name_next:
            return None, ""
        command = frame.command
        if command in _EVALUATING:
            return _EVALUATING[command], command
        names = _NAME_OPTIONS.get(command, ())
        if frame.last_argument in names or (
                command == "printf" and frame.word.startswith("-v")):
            return "variable name", command
        if frame.filled or frame.options_ended or command in _WORD_LISTS:
            return None, ""
        return "option", command

    # -- the command grammar -------------------------------------------------------------

    def _case_state(self, frame: _Frame) -> str | None:
        return frame.cases[-1] if frame.cases else None

    def _begin_word(self, frame: _Frame) -> None:
        if frame.in_word:
            return
        frame.in_word = True
        frame.word = ""
        frame.literal = ""
        frame.filled = False
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
        if frame.condition is not None:
            self._condition_word(frame, word)
            return
        if frame.skip_next:
            frame.skip_next = False
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
            name = word if frame.literal is None else frame.literal
            if frame.runner and name.startswith("-") and name != "-":
                self._runner_option(frame, name)
            elif word in _LEADING_WORDS or _ASSIGNMENT.match(word):
                frame.command_start = True
            elif name in _RUNNERS:
                frame.runner = name
                frame.command_start = True
            elif word == "[[":
                frame.condition = []
                frame.condition_values = []
                frame.command_start = False
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
                frame.command = name
                frame.runner = ""
                frame.command_start = False
        else:
            frame.last_argument = frame.literal
            if frame.literal == "--":
                frame.options_ended = True

    def _runner_option(self, frame: _Frame, option: str) -> None:
        """An option of a runner: the command still follows, except after command -v."""
        if frame.runner == "command" and ("v" in option or "V" in option):
            frame.command = "command " + option  # it looks the names up, runs nothing
            frame.runner = ""
            frame.command_start = False
        elif frame.runner == "exec" and option.endswith("a") and not option.startswith("--"):
            frame.skip_next = True  # exec -a NAME: NAME is no command
        elif option == "--":
            frame.runner = ""

    def _condition_word(self, frame: _Frame, word: str) -> None:
        """A word of [[ … ]]; at "]]", tell each value in it by the words around it."""
        assert frame.condition is not None
        if word != "]]":
            frame.condition.append((frame.literal, frame.condition_values))
            frame.condition_values = []
            return
        words = frame.condition
        for index, (_, values) in enumerate(words):
            before = words[index - 1][0] if index else None
            after = words[index + 1][0] if index + 1 < len(words) else None
            context, operator = None, ""
            if before in _COND_NAMES:
                context, operator = "variable name", f"[[ {before} ]]"
            elif before in _COND_ARITHMETIC or after in _COND_ARITHMETIC:
                context = "conditional arithmetic"
                operator = before if before in _COND_ARITHMETIC else after
            if not frame.top:
                context, operator = "command substitution", ""
            for start in values:
                self._tag(start, context, None, operator or "")
        frame.condition = None
        frame.condition_values = []

    def _condition_operator(self, frame: _Frame) -> None:
        """``( ) ! < > && ||`` and the like in [[ … ]]: words of the test, not the shell's."""
        text, pos = self.text, self.pos
        length = 2 if text.startswith(("&&", "||"), pos) else 1
        assert frame.condition is not None
        frame.condition.append((text[pos:pos + length], []))
        self.pos += length

    def _new_command(self, frame: _Frame) -> None:
        frame.command_start = True
        frame.command = ""
        frame.runner = ""
        frame.skip_next = False
        frame.last_argument = None
        frame.options_ended = False
        frame.redirect_next = False

    def _in_command(self, frame: _Frame) -> None:
        text, pos = self.text, self.pos
        char = text[pos]
        if frame.condition is not None and (char in _OPERATOR_CHARS or char == "\n"):
            self._end_word(frame)  # it may be "]]": then the character is the shell's again
            if frame.condition is None:
                return
            if char == "\n":  # [[ … ]] goes on over lines
                self.pos += 1
            else:
                self._condition_operator(frame)
        elif char == "\n":
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
                frame.literal = None
            else:
                frame.word += text[pos:pos + 2]
                self._literal(frame, text[pos + 1:pos + 2])
                self.pos += 2
        elif char == "'":
            self._begin_word(frame)
            self.pos = self._quoted_span(pos + 1, "'", False, "single quotes")
            self._literal(frame, text[pos + 1:self.pos - 1])
            frame.word += "''"
        elif char == '"':
            self._begin_word(frame)
            frame.word += '""'
            self.frames.append(_Frame("dq", quote_start=pos))
            self.pos += 1
        elif char == "`":
            self._begin_word(frame)
            frame.word += "``"
            frame.literal = None
            self.pos = self._quoted_span(pos + 1, "`", True, "backticks")
        elif char == "$":
            self._begin_word(frame)
            frame.word += "$"
            frame.literal = None
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
            self._literal(frame, char)
            self.pos += 1

    @staticmethod
    def _literal(frame: _Frame, chars: str) -> None:
        """Characters the current word surely holds, as they are."""
        if frame.literal is not None:
            frame.literal += chars
        frame.filled = frame.filled or bool(chars)

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
            if text.startswith("(", self.pos) and (frame.command_start
                                                   or frame.command == "for"):
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
            quoted = self.frames.pop()
            outer = self.frames[-1]
            if outer.kind == "cmd" and quoted.quote_start is not None:
                content = self.text[quoted.quote_start + 1:self.pos]
                if any(c in content for c in "$`\\"):
                    outer.literal = None  # an expansion: maybe empty, unknown
                else:
                    self._literal(outer, content)
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
