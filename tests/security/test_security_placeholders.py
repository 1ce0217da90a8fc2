"""Security review finding 7, checked over real SSH: every runbook step the placeholder
check accepts passes any valid value through as exactly that value, and the check
refuses exactly the templates where shell quoting cannot protect a value.

Templates come from a small grammar: an argument form around the placeholder (plain,
glued, in double or single quotes, in ``$(…)``, backticks, ``${…}``, ``$((…))``, after
``\\`` or ``$``), a statement using it (``printf '[%s]\\n' ARG``, ``X=ARG; printf … "$X"``,
``eval``, a here-document, a comment, the command name) and wrappers around that
(lists, pipelines, groups, ``if``/``for``/``case``, a here-document or comment before,
or a ``$(…)`` around). Each part knows whether it leaves the placeholder where quoting
protects it, so the test knows which templates must be accepted and what they print.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.planning.runbook_files import RunbookError, parse_runbook
from tasks.transport.protocol import StepLocation
from tests.support.remote import RunToTheEnd, host_session

P = "{{ params.v }}"
VALUE_PATTERN = r"^[^\x00\n]{0,40}$"
PRINT = "printf -- '[%s]\\n'"  # one line per argument, its ends visible


@dataclass(frozen=True)
class Part:
    """A piece of the grammar: its text ("{}" is where the inner piece goes), whether it
    keeps the placeholder where quoting protects it, and what it makes of the value."""

    text: str
    safe: bool
    printed: Callable[[str], str] = lambda inner: inner

    def __repr__(self) -> str:  # Hypothesis shows failing examples by their text
        return repr(self.text)


ARGUMENTS = [
    Part(P, True),
    Part("a/" + P, True, lambda v: "a/" + v),
    Part("--opt=" + P, True, lambda v: "--opt=" + v),
    Part('"x"' + P + "'y'", True, lambda v: "x" + v + "y"),
    Part('"' + P + '"', False),
    Part('"a ' + P + ' b"', False),
    Part("'" + P + "'", False),
    Part("$'" + P + "'", False),
    Part('"$(printf %s ' + P + ')"', False),
    Part("$(printf %s " + P + ")", False),
    Part("`printf %s " + P + "`", False),
    Part('"${UNSET_X:-' + P + '}"', False),
    Part("$((" + P + "))", False),
    Part("$" + P, False),
    Part("\\" + P, False),
]

STATEMENTS = [
    Part(PRINT + " {}", True),
    Part("[[ {} -eq 1 ]] && " + PRINT + " one", False),
    Part("let n={}", False),
    Part("declare x={}", False),
    Part("export {}", False),
    Part("trap {} EXIT", False),
    Part("unset {}", False),
    Part("(( {} ))", False),
    Part('X={}; ' + PRINT + ' "$X"', True),
    Part("X={} " + PRINT + " x", True, lambda v: "x"),
    Part("eval " + PRINT + " {}", False),
]

WHOLE_STATEMENTS = [  # statements without an argument form: all unsafe
    Part("cat <<END\n" + P + "\nEND", False),
    Part("cat <<'END'\n" + P + "\nEND", False),
    Part("# note " + P + "\n" + PRINT + " x", False),
    Part(P + " x", False),
    Part("X=1 " + P, False),
]

WRAPPERS = [
    Part("true && {}", True),
    Part("false || {}", True),
    Part("{} | cat", True),
    Part("{}; true", True),
    Part("( {} )", True),
    Part("{ {}; }", True),
    Part("if true; then {}; fi", True),
    Part("for _ in 1; do {}; done", True),
    Part("case x in\n  x) {} ;;\nesac", True),
    Part("cat >/dev/null <<'EOF'\nit's \"odd\" $( `\nEOF\n{}", True),
    Part("cat >/dev/null <<-EOF\n\t) ' \"\n\tEOF\n{}", True),
    Part("# it's a \"comment\" $(\n{}", True),
    Part('x="$(case a in a) echo ")";; esac)"\n{}', True),
    Part('y="a \\" b" z=`echo a` w=$((1 + (2))); : \\`\n{}', True),
    Part(': long \\\n  line; {}', True),
    Part('printf \'%s\\n\' "$( {} )"', False),
    Part("cat <<OUTER\n$( {} )\nOUTER", False),
]


@dataclass(frozen=True)
class Template:
    text: str
    safe: bool
    printed: Callable[[str], str]


def build(statement: Part, argument: Part, wrappers: list[Part]) -> Template:
    text = statement.text.replace("{}", argument.text)
    safe = statement.safe and argument.safe
    printed = _compose(statement.printed, argument.printed)
    for wrapper in wrappers:
        text = wrapper.text.replace("{}", text, 1)
        safe = safe and wrapper.safe
    return Template(text, safe, printed)


def _compose(outer: Callable[[str], str], inner: Callable[[str], str]) -> Callable[[str], str]:
    return lambda value: outer(inner(value))




def leaning_safe(parts: list[Part]) -> st.SearchStrategy[Part]:
    """Any part, but a safe one at least half the time: most templates run."""
    return st.sampled_from([part for part in parts if part.safe]) | st.sampled_from(parts)


templates = st.builds(
    build,
    leaning_safe(STATEMENTS + WHOLE_STATEMENTS),
    leaning_safe(ARGUMENTS),
    st.lists(st.sampled_from(WRAPPERS), max_size=2),
)

# Under bash, arithmetic and declarations evaluate a [subscript] of such a value: each
# runs `touch PWNED` in the step's directory if any accepted template lets bash do so.
HOSTILE = ["a[$(touch PWNED)]", "x[`touch PWNED`]", "a[$(touch PWNED)]=1", "-v",
           "PATH=/nowhere"]

values = st.sampled_from(HOSTILE) | st.text(
    alphabet=st.sampled_from(
        [chr(c) for c in range(0x20, 0x7F)] + ["\t", "é", "日", "\u00a0", "ß"]),
    max_size=40,
) | st.lists(st.sampled_from(["$(id)", "`id`", "'", '"', "\\", ";", "|", "&&", "<", ">",
                              "*", "?", "~", "!", "#", "{", "}", "$HOME", " ", "a=b",
                              "-n", "%s", "EOF", ")", "$'", "\\'", "-v", "--help",
                              "PATH=/x", "a[$(touch PWNED)]", "a[`touch PWNED`]"]),
             max_size=8).map("".join).filter(lambda v: len(v) <= 40)


def runbook_for(template: str):
    return parse_runbook(yaml.safe_dump({
        "name": "t",
        "params": {"v": {"pattern": VALUE_PATTERN, "required": False}},
        "steps": [{"name": "s", "run": template}],
    }), "generated.yml")




@pytest.fixture(scope="module")
def remote(sshd_fleet):
    with host_session(sshd_fleet, 1) as opened:
        yield opened


step_numbers = itertools.count()


def run_batch(remote, commands: list[str]) -> tuple[dict[str, list[list[str]]], list[str]]:
    """Run every command over SSH in the login shell, again under ``sh`` (dash) and
    under ``bash``, in a directory of their own; the lines each printed, per shell,
    and every stderr line. A ``PWNED`` file left in that directory fails the test."""
    session, host = remote
    batch = "\n".join(f"printf '@@ %d\\n' {i}\n(\n{command}\n)"
                      for i, command in enumerate(commands))
    quoted = shlex.quote(batch)
    script = (f"mkdir -p pb-grammar && cd pb-grammar && rm -f PWNED\n"
              f"printf '@@ login\\n'\n{batch}\nprintf '@@ sh\\n'\nsh -c {quoted}\n"
              f"printf '@@ bash\\n'\nbash -c {quoted}\n"
              "if [ -e PWNED ]; then echo 'a value ran a command' >&2; exit 1; fi")
    out: list[str] = []
    err: list[str] = []
    where = StepLocation("~/.patchbay/test-runs", "placeholders", host.name,
                         str(next(step_numbers)))
    result = session.start_step(
        where, script,
        lambda stream, line, offset: (out if stream == "stdout" else err).append(line),
        RunToTheEnd())
    assert result.exit_code == 0, (result, err)
    printed: dict[str, list[list[str]]] = {}
    for line in out:
        if line in ("@@ login", "@@ sh", "@@ bash"):
            shell = printed.setdefault(line[3:], [])
        elif line.startswith("@@ "):
            shell.append([])
        else:
            shell[-1].append(line)
    return printed, err


@settings(max_examples=150, deadline=None)
@given(cases=st.lists(st.tuples(templates, values), min_size=1, max_size=6))
def test_finding_7_accepted_templates_pass_values_literally_over_ssh(remote, cases):
    accepted: list[tuple[Template, str, str]] = []
    for template, value in cases:
        try:
            runbook = runbook_for(template.text)
        except RunbookError as refused:
            assert not template.safe, f"refused a safe template {template.text!r}: {refused}"
            continue
        assert template.safe, f"accepted an unsafe template {template.text!r}"
        (step,) = runbook.render(runbook.validate_params({"v": value}), remote[1])
        accepted.append((template, value, step.command))
    if not accepted:
        return

    printed, errors = run_batch(remote, [command for _, _, command in accepted])

    expected = [[f"[{template.printed(value)}]"] for template, value, _ in accepted]
    assert errors == []
    assert printed == {"login": expected, "sh": expected, "bash": expected}
