"""Where each placeholder of a runbook step sits in the step's shell text.

A substituted value is shell-quoted (``shlex.quote``): one literal word, *if* the shell
reads it as a word of the script. Inside double quotes, single quotes, ``$'…'``, a
command substitution, ``${…}``, ``$((…))``, a here-document body or a comment the quotes
of the value are no longer the shell's quoting: ``echo "msg {{ params.m }}"`` with
``m=$(id)`` renders ``echo "msg '$(id)'"`` and runs ``id``.

:func:`placeholder_sites` runs a small POSIX ``sh`` lexer
(:mod:`tasks.planning.shell_lexer`) over a step's ``run`` text (the template,
placeholders still in it) and tells for each placeholder the context it sits in.
A placeholder is accepted (context ``None``) only in an unquoted word of the
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

import re
from dataclasses import dataclass

from tasks.planning.shell_lexer import find_contexts

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
    matches = [(m.start(), m.end()) for m in placeholder.finditer(template)]
    found = find_contexts(template, matches)
    sites = []
    for start, end in matches:
        # A placeholder the lexer never reached (it should not happen) is refused too.
        context, quote, command = found.get(start, ("unknown", None, ""))
        sites.append(PlaceholderSite(start, end, template.count("\n", 0, start) + 1,
                                     context, quote, command))
    return sites
