"""Security review finding 7: a placeholder where shell quoting cannot protect it (inside
quotes, an expansion, a here-document, a comment, the command name) is refused when
the runbook is loaded, with the file, step, line and context named."""

from __future__ import annotations

import textwrap

import pytest

from tasks.runbooks import PLACEHOLDER, RunbookError, load_runbooks, parse_runbook
from tasks.shell_context import placeholder_sites
from tests.conftest import PROJECT


def runbook(run: str, section: str = "steps") -> str:
    """A runbook whose step "announce" (in ``section``) runs ``run``."""
    body = textwrap.indent(run, " " * 8)
    step = f"  - name: announce\n    run: |\n{body}\n"
    steps = step if section == "steps" else "  - name: first\n    run: echo\n"
    failure = f"on_failure:\n{step}" if section == "on_failure" else ""
    return f"name: t\nparams:\n  m: {{}}\n  v: {{}}\nsteps:\n{steps}{failure}"


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
    "an argument": "cmd {{ params.v }}",
    "an assignment, then the variable": 'X={{ params.v }}; echo "$X"',
    "an assignment before a command": "X={{ params.v }} cmd",
    "a list and a pipeline": "a && b {{ params.v }} | c",
    "glued to text and quotes":
        'cmd releases/{{ params.v }} --opt={{ params.v }} "a"{{ params.v }}',
    "after a here-document": "cat <<EOF\nit's \"odd\" $(\nEOF\necho {{ params.v }}",
    "after a quoted here-document": "cat <<-'EOF' >out\n\t'\n\tEOF\necho {{ params.v }}",
    "after a comment with a quote": '# it\'s a "comment\necho {{ params.v }}',
    "a # inside a word": "echo a#{{ params.v }}",
    "after a closed command substitution":
        'x="$(case a in a) echo ")";; esac)" && echo {{ params.v }}',
    "a subshell and a group": "( cd {{ params.v }} && make ) && { echo {{ params.v }}; }",
    "a redirection target": "echo x > {{ params.v }} 2>>{{ params.v }}",
    "a here-string": "cat <<< {{ params.v }}",
    "a for list": 'for x in {{ params.v }}; do echo "$x"; done',
    "a case word and pattern": "case ,{{ params.v }}, in\n  *,{{ params.v }},*) echo y ;;\nesac",
    "an if condition argument": "if [ {{ params.v }} = x ]; then echo {{ params.v }}; fi",
    "an export": "export X={{ params.v }}",
    "after a line continuation": "echo a \\\n  {{ params.v }}",
    "an argument of command -v": "command -v {{ params.v }} >/dev/null",
}


@pytest.mark.parametrize("run", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_finding_7_a_placeholder_in_a_plain_word_is_accepted(run):
    parse_runbook(runbook(run), "ok.yml")


def test_finding_7_every_placeholder_of_a_step_gets_its_own_context():
    template = 'echo {{ params.v }} "{{ params.v }}"\n# {{ params.v }}\n{{ params.v }}'

    sites = placeholder_sites(template, PLACEHOLDER)

    assert [(site.line, site.context) for site in sites] == [
        (1, None), (1, "double quotes"), (2, "comment"), (3, "command name")]


def test_finding_7_every_shipped_runbook_still_loads():
    from tests.console_world import FLOOD

    for directory in ("runbooks", "tests/runbooks", "bench/runbooks"):
        assert load_runbooks(PROJECT / directory)
    assert parse_runbook(FLOOD, "flood.yml").name == "flood"
