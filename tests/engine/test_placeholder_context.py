"""Security review finding 7: a placeholder where shell quoting cannot protect it (inside
quotes, an expansion, a here-document, a comment, the command name) is refused when
the runbook is loaded, with the file, step, line and context named."""

from __future__ import annotations

import textwrap

import pytest

from tasks.planning.runbook_files import RunbookError, load_runbooks, parse_runbook
from tasks.planning.runbook_schema import PLACEHOLDER
from tasks.planning.shell_context import placeholder_sites
from tests.conftest import PROJECT


def runbook(run: str, section: str = "steps") -> str:
    """A runbook whose step "announce" (in ``section``) runs ``run``."""
    body = textwrap.indent(run, " " * 8)
    step = f"  - name: announce\n    run: |\n{body}\n"
    steps = step if section == "steps" else "  - name: first\n    run: echo\n"
    failure = f"on_failure:\n{step}" if section == "on_failure" else ""
    return (f"name: t\nparams:\n  m: {{}}\n  v: {{}}\n  w: {{pattern: '{WORD}'}}\n"
            f"steps:\n{steps}{failure}")


WORD = "^[a-z0-9][a-z0-9.-]*$"  # a pattern whose values never start with "-"


REFUSED = {
    "double quotes": ('echo "msg {{ params.m }}"', "is inside double quotes"),
    "single quotes": ("echo 'msg {{ params.m }}'", "is inside single quotes"),
    "ansi-c quotes": ("echo $'msg {{ params.m }}'", "is inside $'…' quotes"),
    "command substitution": ("x=$(printf %s {{ params.m }})",
                             "is inside a command substitution $(…)"),
    "command substitution in quotes": ('echo "$(printf %s {{ params.m }})"',
                                       "is inside a command substitution $(…)"),
    "backticks": ("x=`printf %s {{ params.m }}`", "is inside a backtick command substitution"),
    "parameter expansion": ("echo ${X:-{{ params.m }}}", "is inside a parameter expansion"),
    "arithmetic": ("echo $(( {{ params.m }} + 1 ))", "is inside an arithmetic expression"),
    "arithmetic command": ("(( n = {{ params.m }} ))", "is inside an arithmetic expression"),
    "here-document body": ("cat <<EOF\nsaid {{ params.m }}\nEOF",
                           "is inside a here-document body"),
    "quoted here-document body": ("cat <<'EOF'\n{{ params.m }}\nEOF",
                                  "is inside a here-document body"),
    "tab-stripped here-document body": ("cat <<-EOF\n\t{{ params.m }}\n\tEOF",
                                        "is inside a here-document body"),
    "here-document delimiter": ("cat <<{{ params.m }}\nx", "is a here-document delimiter"),
    "comment": ("true  # note {{ params.m }}", "is inside a comment"),
    "after a backslash": ("echo \\{{ params.m }}", "is right after a backslash"),
    "after a dollar": ("echo ${{ params.m }}", "is right after a $"),
    "command name": ("{{ params.m }} --version", "is in the command name"),
    "command name after an assignment": ("X=1 {{ params.m }}", "is in the command name"),
    "command name after then": ("if true; then {{ params.m }}; fi", "is in the command name"),
    "command name after exec": ("exec {{ params.m }}", "is in the command name"),
    "command name in a function": ("function f { {{ params.m }}; }", "is in the command name"),
    "argument of eval": ("eval echo {{ params.m }}", "is an argument of eval"),
    "double quotes inside $(…)": ('x=$(echo "{{ params.m }}")', "is inside double quotes"),
}


@pytest.mark.parametrize(("run", "context"), REFUSED.values(), ids=REFUSED.keys())
def test_finding_7_a_placeholder_quoting_cannot_protect_is_refused(run, context):
    text = runbook("set -eu\n" + run)

    with pytest.raises(RunbookError) as refused:
        parse_runbook(text, "game-update.yml")

    message = str(refused.value)
    line = 2 + next(i for i, part in enumerate(run.split("\n")) if "{{" in part)
    assert message.startswith(f'game-update.yml: step "announce" (steps.0), line {line}: '
                              "{{ params.m }} " + context)
    assert "where shell quoting cannot protect it; " in message


def test_finding_7_the_message_shows_the_line_with_the_placeholder_outside_the_quotes():
    with pytest.raises(RunbookError) as refused:
        parse_runbook(runbook('set -eu\necho "msg {{ params.m }}"'), "game-update.yml")

    assert str(refused.value) == (
        'game-update.yml: step "announce" (steps.0), line 2: {{ params.m }} is inside '
        "double quotes, where shell quoting cannot protect it; put it outside the quotes: "
        'echo "msg "{{ params.m }}')


@pytest.mark.parametrize(("line", "fixed"), [
    ('echo "{{ params.m }}"', "echo {{ params.m }}"),
    ('echo "{{ params.m }} and $HOME"', 'echo {{ params.m }}" and $HOME"'),
    ('echo "a {{ params.m }} b" >&2', 'echo "a "{{ params.m }}" b" >&2'),
])
def test_finding_7_the_rewritten_line_keeps_the_rest_of_the_quotes(line, fixed):
    with pytest.raises(RunbookError) as refused:
        parse_runbook(runbook(line), "t.yml")

    assert str(refused.value).endswith(f"put it outside the quotes: {fixed}")


def test_finding_7_other_contexts_advise_a_variable():
    with pytest.raises(RunbookError) as refused:
        parse_runbook(runbook('x=$(printf %s "{{ params.m }}")'), "t.yml")

    assert str(refused.value).endswith(
        'copy it into a variable first (v={{ params.m }}) and write "$v" there')


def test_finding_7_an_on_failure_step_is_named_by_its_section():
    with pytest.raises(RunbookError) as refused:
        parse_runbook(runbook('echo "undo {{ params.m }}"', "on_failure"), "t.yml")

    assert str(refused.value).startswith(
        't.yml: step "announce" (on_failure.0), line 1: {{ params.m }} is inside double quotes')


ACCEPTED = {
    "an argument after --": "cmd -- {{ params.v }}",
    "an argument whose pattern cannot start with -": "cmd {{ params.w }}",
    "an assignment, then the variable": 'X={{ params.v }}; echo "$X"',
    "an assignment before a command": "X={{ params.v }} cmd",
    "a list and a pipeline": "a && b -- {{ params.v }} | c",
    "glued to text and quotes":
        'cmd releases/{{ params.v }} --opt={{ params.v }} "a"{{ params.v }}',
    "after a here-document": "cat <<EOF\nit's \"odd\" $(\nEOF\necho {{ params.w }}",
    "after a quoted here-document": "cat <<-'EOF' >out\n\t'\n\tEOF\necho {{ params.w }}",
    "after a comment with a quote": '# it\'s a "comment\necho {{ params.w }}',
    "a # inside a word": "echo a#{{ params.v }}",
    "after a closed command substitution":
        'x="$(case a in a) echo ")";; esac)" && echo {{ params.w }}',
    "a subshell and a group": "( cd -- {{ params.v }} && make ) && { echo {{ params.w }}; }",
    "a redirection target": "echo x > {{ params.v }} 2>>{{ params.v }}",
    "a here-string": "cat <<< {{ params.v }}",
    "a for list": 'for x in {{ params.v }}; do echo "$x"; done',
    "a case word and pattern": "case ,{{ params.v }}, in\n  *,{{ params.v }},*) echo y ;;\nesac",
    "an if condition argument": "if [ {{ params.w }} = x ]; then echo {{ params.w }}; fi",
    "an assignment, then export": "X={{ params.v }}; export X",
    "after a line continuation": "echo a \\\n  {{ params.w }}",
    "an argument of command -v": "command -v -- {{ params.v }} >/dev/null",
    "a string test in [[ ]]": "[[ {{ params.v }} == x && -n {{ params.v }} ]] && echo y",
    "a for word list": "for x in {{ params.v }}; do :; done",
}


@pytest.mark.parametrize("run", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_finding_7_a_placeholder_in_a_plain_word_is_accepted(run):
    parse_runbook(runbook(run), "ok.yml")


def test_finding_7_every_placeholder_of_a_step_gets_its_own_context():
    template = 'echo {{ params.v }} "{{ params.v }}"\n# {{ params.v }}\n{{ params.v }}'

    sites = placeholder_sites(template, PLACEHOLDER)

    assert [(site.line, site.context) for site in sites] == [
        (1, "option"), (1, "double quotes"), (2, "comment"), (3, "command name")]


def test_finding_7_every_shipped_runbook_still_loads():
    from tests.support.console_world import FLOOD

    for directory in ("runbooks", "tests/runbooks", "bench/runbooks"):
        assert load_runbooks(PROJECT / directory)
    assert parse_runbook(FLOOD, "flood.yml").name == "flood"


AUDIT3_5_REFUSED = {
    "[[ -eq ]] left": ("[[ {{ params.m }} -eq 1 ]]",
                       "is an operand of -eq in [[ … ]], which bash evaluates as arithmetic"),
    "[[ -lt ]] right": ("[[ 1 -lt {{ params.m }} ]] && echo y",
                        "is an operand of -lt in [[ … ]], which bash evaluates as arithmetic"),
    "[[ ]] over lines": ("[[ -n x &&\n  {{ params.m }} -ge 2 ]]",
                         "is an operand of -ge in [[ … ]]"),
    "(( ))": ("(( n = {{ params.m }} ))", "is inside an arithmetic expression"),
    "for (( ))": ("for (( i = {{ params.m }}; i < 3; i++ )); do :; done",
                  "is inside an arithmetic expression"),
    "$(( ))": ("echo $(( {{ params.m }} ))", "is inside an arithmetic expression"),
    "let": ("let n={{ params.m }}", "is an argument of let, which evaluates it as arithmetic"),
    "quoted let": ("'let' {{ params.m }}", "is an argument of let"),
    "builtin let": ("builtin let {{ params.m }}", "is an argument of let"),
    "declare": ("declare n={{ params.m }}", "is an argument of declare, which reads it as "
                                           "NAME=value or as an option"),
    "typeset": ("typeset -i n={{ params.m }}", "is an argument of typeset"),
    "local": ("f() { local n={{ params.m }}; }", "is an argument of local"),
    "export": ("export {{ params.m }}", "is an argument of export"),
    "readonly": ("readonly R={{ params.m }}", "is an argument of readonly"),
    "unset": ("unset {{ params.m }}", "is an argument of unset, which bash reads as a "
                                      "variable name"),
    "read": ("read {{ params.m }} <<< x", "is an argument of read"),
    "test -v": ("[ -v {{ params.m }} ]", "is an argument of [, which bash reads as a "
                                         "variable name"),
    "[[ -v ]]": ("[[ -v {{ params.m }} ]]", "is an argument of [[ -v ]]"),
    "printf -v": ("printf -v {{ params.m }} %s x", "is an argument of printf, which bash "
                                                   "reads as a variable name"),
    "compgen": ("compgen -W {{ params.m }}", "is an argument of compgen, which the shell "
                                             "can run as code"),
}


@pytest.mark.parametrize(("run", "context"), AUDIT3_5_REFUSED.values(),
                         ids=AUDIT3_5_REFUSED.keys())
def test_audit3_5_bash_arithmetic_and_declarations_refuse_placeholders(run, context):
    with pytest.raises(RunbookError) as refused:
        parse_runbook(runbook("set -eu\n" + run), "game-update.yml")

    line = 2 + next(i for i, part in enumerate(run.split("\n")) if "{{" in part)
    assert str(refused.value).startswith(
        f'game-update.yml: step "announce" (steps.0), line {line}: {{{{ params.m }}}} '
        + context)


def test_audit3_5_the_advice_for_arithmetic_asks_for_a_digits_only_pattern():
    with pytest.raises(RunbookError) as refused:
        parse_runbook(runbook("let n={{ params.m }}"), "t.yml")

    assert str(refused.value).endswith(
        "give the parameter a digits-only pattern (^[0-9]+$), copy it into a variable "
        "first (n={{ params.m }}) and write $n there")


AUDIT3B_8_REFUSED = {
    "trap action": ("trap {{ params.m }} EXIT", "is an argument of trap, whose action "
                                                "the shell runs as code"),
    "trap after --": ("trap -- {{ params.m }} EXIT", "is an argument of trap"),
    "export PATH=": ("export PATH={{ params.m }}", "is an argument of export"),
    "an option position": ("rm {{ params.m }}", "is an argument of rm before any --, "
                                                "where a value starting with - is read as "
                                                "an option (parameter 'm' has no pattern); "
                                                "add -- before it (rm -- {{ params.m }})"),
    "after empty quotes": ('rm ""{{ params.m }}', "is an argument of rm before any --"),
    "a quoted eval": ('"eval" x {{ params.m }}', "is an argument of eval"),
    "the command after nohup --": ("nohup -- {{ params.m }}", "is in the command name"),
    "the command after setsid -f": ("setsid -f {{ params.m }}", "is in the command name"),
    "the script of .": (". {{ params.m }}", "is in the command name"),
    "echo": ("echo {{ params.m }}", "is an argument of echo before any --"),
}


@pytest.mark.parametrize(("run", "context"), AUDIT3B_8_REFUSED.values(),
                         ids=AUDIT3B_8_REFUSED.keys())
def test_audit3b_8_code_and_option_positions_refuse_placeholders(run, context):
    with pytest.raises(RunbookError) as refused:
        parse_runbook(runbook("set -eu\n" + run), "game-update.yml")

    assert str(refused.value).startswith(
        'game-update.yml: step "announce" (steps.0), line 2: {{ params.m }} ' + context)


def test_audit3b_8_the_previous_build_in_an_option_position_needs_a_double_dash():
    text = "name: t\nsteps:\n  - name: s\n    run: x\nrollback:\n  - name: r\n    run: {}\n"

    with pytest.raises(RunbookError, match=r"is an argument of cd before any --, .*"
                                           r"\(the previous build is whatever a server"):
        parse_runbook(text.format("cd {{ previous_version }}"), "t.yml")
    parse_runbook(text.format("cd -- {{ previous_version }}"), "t.yml")


@pytest.mark.parametrize(("pattern", "accepted"), [
    ("^[0-9]+(\\.[0-9]+){2}$", True), ("^(true|false)$", True), ("^/[a-z/]+$", True),
    ("^[a-z0-9][a-z0-9-]*$", True), ("\\d+", True), ("[^-].*", True),
    ("^[a-z0-9-]+$", False), ("-?[0-9]+", False), ("^[^\\n]{1,200}$", False),
    (".*", False), ("(x|-y)", False), ("x?-", False), ("\\S+", False), ("[+-/]", False),
])
def test_audit3b_8_an_option_position_is_accepted_only_if_the_pattern_excludes_a_dash(
        pattern, accepted):
    text = ("name: t\nparams:\n  p:\n    pattern: '" + pattern + "'\n"
            "steps:\n  - name: s\n    run: rm {{ params.p }}\n")

    if accepted:
        parse_runbook(text, "t.yml")
    else:
        with pytest.raises(RunbookError, match=r"is an argument of rm before any --"):
            parse_runbook(text, "t.yml")
