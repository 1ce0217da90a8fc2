"""The words of a command frame, for the placeholder lexer: which word is the command
name, an argument, a redirection target, a case subject or pattern, or a word of
``[[ … ]]``; and so the context of a placeholder in each (the rules are listed in
:mod:`tasks.planning.shell_context`)."""

from __future__ import annotations

import re

from tasks.planning.shell_scan import Frame, Scan

ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
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
# Where a case goes after a word of it, by where it was ("pattern" waits for ")").
_CASE_AFTER_WORD = {"subject": "in", "in": "pattern"}


def new_command(frame: Frame) -> None:
    """After a newline or an operator: the next word starts a simple command."""
    frame.command_start = True
    frame.command = ""
    frame.runner = ""
    frame.skip_next = False
    frame.last_argument = None
    frame.options_ended = False
    frame.redirect_next = False


def begin_word(frame: Frame) -> None:
    """A character of a word: it begins one unless the frame is in one."""
    if frame.in_word:
        return
    frame.in_word = True
    frame.word = ""
    frame.literal = ""
    frame.filled = False
    frame.word_is_redirect_target = frame.redirect_next
    frame.word_is_command = (frame.command_start and not frame.redirect_next
                             and frame.case_state() in (None, "body"))


def value_in_word(scan: Scan, frame: Frame, start: int) -> None:
    """The placeholder at ``start`` in the current word of a command frame."""
    begin_word(frame)
    if frame.condition is not None:  # told at "]]", by the words around it
        frame.condition_values.append(start)
    else:
        context, command = word_context(frame)
        if not frame.top:
            context, command = "command substitution", ""
        scan.tag(start, context, None, command)
    frame.word += "\0"
    frame.literal = None


def word_context(frame: Frame) -> tuple[str | None, str]:
    """The context of a value in the current word of a command frame."""
    if frame.word_is_redirect_target or frame.skip_next:
        return None, ""
    if frame.word_is_command:
        return (None if ASSIGNMENT.match(frame.word) else "command name"), ""
    if frame.case_state() not in (None, "body") or frame.function_name_next:
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


def end_word(scan: Scan, frame: Frame) -> None:
    """The current word (if any) ends: what it was moves the command grammar on."""
    if not frame.in_word:
        return
    frame.in_word = False
    word = frame.word
    if frame.word_is_redirect_target:
        frame.redirect_next = False
    elif frame.condition is not None:
        _condition_word(scan, frame, word)
    elif frame.skip_next:
        frame.skip_next = False
    elif frame.function_name_next:
        frame.function_name_next = False
        frame.command_start = True
    elif frame.case_state() in ("subject", "in", "pattern"):
        _case_word(frame, word)
    elif frame.word_is_command:
        _command_word(frame, word)
    else:
        frame.last_argument = frame.literal
        if frame.literal == "--":
            frame.options_ended = True


def _case_word(frame: Frame, word: str) -> None:
    """A word of a case outside its bodies: the subject, "in", or a pattern (or esac)."""
    state = frame.case_state()
    if state in _CASE_AFTER_WORD:
        frame.cases[-1] = _CASE_AFTER_WORD[state]
    elif word == "esac":
        frame.cases.pop()
        frame.command_start = False


def _command_word(frame: Frame, word: str) -> None:
    """A word where a command name goes: a reserved word, an assignment, a runner or
    its option, or the command's name."""
    name = word if frame.literal is None else frame.literal
    if frame.runner and name.startswith("-") and name != "-":
        _runner_option(frame, name)
    elif word in _LEADING_WORDS or ASSIGNMENT.match(word):
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


def _runner_option(frame: Frame, option: str) -> None:
    """An option of a runner: the command still follows, except after command -v."""
    if frame.runner == "command" and ("v" in option or "V" in option):
        frame.command = "command " + option  # it looks the names up, runs nothing
        frame.runner = ""
        frame.command_start = False
    elif frame.runner == "exec" and option.endswith("a") and not option.startswith("--"):
        frame.skip_next = True  # exec -a NAME: NAME is no command
    elif option == "--":
        frame.runner = ""


def _condition_word(scan: Scan, frame: Frame, word: str) -> None:
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
            scan.tag(start, context, None, operator or "")
    frame.condition = None
    frame.condition_values = []
