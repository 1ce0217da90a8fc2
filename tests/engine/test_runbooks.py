"""Runbook parsing, parameter validation, rendering (shell quoting) and the runbook store."""

from __future__ import annotations

import os
import shlex
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasks.errors import PatchbayError
from tasks.planning.rendered_steps import HostContext
from tasks.planning.runbook_files import RunbookError, load_runbooks, parse_runbook
from tasks.planning.runbook_store import RunbookStore
from tasks.planning.runbooks import MAX_PARAM_LENGTH, Runbook

PROJECT = Path(__file__).resolve().parents[2]
VERSION_PATTERN = r"^[0-9]+(\.[0-9]+){2}$"

GOOD = textwrap.dedent("""\
    name: deploy-game
    description: Roll out a build.
    params:
      version:
        pattern: '^[0-9]+(\\.[0-9]+){2}$'
        description: Build to roll out
      channel:
        required: false
        default: stable
      workers:
        type: integer
        required: false
        default: 4
    steps:
      - name: fetch
        run: echo fetching {{ params.version }} from:{{ params.channel }}
        timeout: 30
      - name: report
        run: cat {{ vars.root }}/VERSION
        capture: version
    on_failure:
      - name: rollback
        run: echo rolling back {{ host.name }}
    strategy:
      batches: [1, "50%"]
    """)


def host(**overrides) -> HostContext:
    values = {"name": "gs-01", "address": "10.0.0.11", "port": 22, "user": "deploy",
              "vars": {"root": "/srv/game"}}
    values.update(overrides)
    return HostContext(**values)


def one_step(run: str, params: str = "") -> str:
    """A minimal runbook text with one step running ``run`` (a YAML block scalar)."""
    body = textwrap.indent(run, " " * 8)
    return f"name: t\n{params}steps:\n  - name: s\n    run: |\n{body}\n"


def with_param(spec: str) -> Runbook:
    """A runbook with one parameter ``version`` declared by the YAML mapping ``spec``."""
    return parse_runbook(
        f"name: t\nparams:\n  version: {spec}\nsteps:\n  - name: s\n"
        "    run: echo v={{ params.version }}\n", "t.yml")


# --- parsing -------------------------------------------------------------------------


def test_good_runbook_parses_and_describes_itself():
    runbook = parse_runbook(GOOD, "deploy.yml")

    assert runbook.name == "deploy-game"
    assert runbook.source == "deploy.yml"
    description = runbook.describe()
    assert description["name"] == "deploy-game"
    assert description["description"] == "Roll out a build."
    assert description["steps"] == ["fetch", "report"]
    assert description["on_failure"] == ["rollback"]
    assert description["strategy"] == {"batches": [1, "50%"]}
    assert list(description["params"]) == ["version", "channel", "workers"]
    assert description["params"]["version"]["pattern"] == VERSION_PATTERN
    assert description["params"]["version"]["required"] is True
    assert description["params"]["channel"] == {
        "type": "string", "pattern": None, "description": "", "default": "stable",
        "required": False, "secret": False, "example": None, "pattern_hint": None}
    assert description["params"]["workers"]["type"] == "integer"


def test_step_options_are_kept():
    runbook = parse_runbook(GOOD, "deploy.yml")

    fetch, report = runbook.spec.steps
    assert (fetch.timeout, fetch.capture) == (30, None)
    assert (report.timeout, report.capture) == (None, "version")


BAD_RUNBOOKS = {
    "invalid YAML": ("name: [deploy\nsteps: []\n", "YAML"),
    "not a mapping": ("- name: deploy\n- run: echo\n", "mapping"),
    "scalar document": ("just a string\n", "mapping"),
    "missing name": ("steps:\n  - name: s\n    run: echo\n", "field name"),
    "bad name pattern": ("name: Deploy Game\nsteps:\n  - name: s\n    run: echo\n",
                         "field name"),
    "empty steps": ("name: t\nsteps: []\n", "field steps"),
    "missing steps": ("name: t\n", "field steps"),
    "step without run": ("name: t\nsteps:\n  - name: s\n",
                         "field steps.0: a step needs either run (a command) or wait"),
    "unknown top-level field": ("name: t\nsudo: true\nsteps:\n  - name: s\n    run: echo\n",
                                "field sudo"),
    "unknown step field": ("name: t\nsteps:\n  - name: s\n    run: echo\n    become: root\n",
                           "field steps.0.become"),
    "unknown parameter placeholder": (one_step("echo {{ params.x }}"),
                                      "field steps.0.run: unknown parameter 'x'"),
    "unknown placeholder scope": (one_step("echo {{ foo.bar }}"), "field steps.0.run"),
    "host.password": (one_step("echo {{ host.password }}"), "field steps.0.run"),
    "malformed placeholder": (one_step("echo {{ params.version",
                                       "params:\n  version: {}\n"), "field steps.0.run"),
    "stray closing braces": (one_step("echo params.version }}", "params:\n  version: {}\n"),
                             "field steps.0.run"),
    "placeholder in on_failure": (
        "name: t\nsteps:\n  - name: s\n    run: echo\non_failure:\n  - name: undo\n"
        "    run: echo {{ params.nope }}\n", "field on_failure.0.run"),
    "invalid regex pattern": (
        "name: t\nparams:\n  version:\n    pattern: '([0-9'\nsteps:\n  - name: s\n"
        "    run: echo\n", "field params.version.pattern"),
    "bad parameter name": (
        "name: t\nparams:\n  1version: {}\nsteps:\n  - name: s\n    run: echo\n",
        "field params"),
    "unknown parameter type": (
        "name: t\nparams:\n  version:\n    type: float\nsteps:\n  - name: s\n    run: echo\n",
        "field params.version.type"),
    "non-positive timeout": ("name: t\nsteps:\n  - name: s\n    run: echo\n    timeout: 0\n",
                             "field steps.0.timeout"),
}


@pytest.mark.parametrize(("text", "names"), BAD_RUNBOOKS.values(), ids=BAD_RUNBOOKS.keys())
def test_bad_runbook_error_names_file_and_field(text, names):
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "broken.yml")

    message = str(caught.value)
    assert message.startswith("broken.yml: ")
    assert names in message


def test_unknown_placeholder_scope_is_named():
    with pytest.raises(RunbookError, match="unknown placeholder scope 'foo'"):
        parse_runbook(one_step("echo {{ foo.bar }}"), "broken.yml")


def test_host_password_is_not_a_host_field():
    with pytest.raises(RunbookError, match=r"host\.password is not one of name, address"):
        parse_runbook(one_step("echo {{ host.password }}"), "broken.yml")


def test_placeholders_in_every_scope_are_accepted():
    text = one_step("printf -- '%s\\n' {{params.v}} {{ vars.root }} {{ host.name }} "
                    "{{ host.address }} {{ host.port }} {{ host.user }}",
                    "params:\n  v: {}\n")

    runbook = parse_runbook(text, "ok.yml")

    assert runbook.name == "t"


def test_load_runbooks_reads_every_yaml_file(tmp_path):
    (tmp_path / "a.yml").write_text("name: alpha\nsteps:\n  - name: s\n    run: echo a\n")
    (tmp_path / "b.yaml").write_text("name: beta\nsteps:\n  - name: s\n    run: echo b\n")
    (tmp_path / "notes.txt").write_text("not a runbook")

    runbooks = load_runbooks(tmp_path)

    assert sorted(runbooks) == ["alpha", "beta"]
    assert runbooks["alpha"].source == "a.yml"
    assert runbooks["beta"].source == "b.yaml"


def test_duplicate_runbook_name_across_files_names_both_files(tmp_path):
    (tmp_path / "a.yml").write_text("name: deploy\nsteps:\n  - name: s\n    run: echo a\n")
    (tmp_path / "b.yml").write_text("name: deploy\nsteps:\n  - name: s\n    run: echo b\n")

    with pytest.raises(RunbookError) as caught:
        load_runbooks(tmp_path)

    message = str(caught.value)
    assert message.startswith("b.yml: field name:")
    assert "'deploy'" in message
    assert "a.yml" in message


def test_load_runbooks_reports_the_bad_file(tmp_path):
    (tmp_path / "a.yml").write_text("name: alpha\nsteps:\n  - name: s\n    run: echo a\n")
    (tmp_path / "z.yml").write_text("name: zulu\nsteps: []\n")

    with pytest.raises(RunbookError, match=r"^z\.yml: field steps"):
        load_runbooks(tmp_path)


# --- parameter validation ------------------------------------------------------------


def test_required_parameter_missing():
    runbook = with_param(f"{{pattern: '{VERSION_PATTERN}'}}")

    with pytest.raises(PatchbayError) as caught:
        runbook.validate_params({})

    assert caught.value.code == "invalid"
    assert caught.value.field == "params.version"
    assert "required" in caught.value.message


def test_empty_string_counts_as_missing():
    runbook = with_param("{}")

    with pytest.raises(PatchbayError, match="required") as caught:
        runbook.validate_params({"version": ""})

    assert caught.value.field == "params.version"


def test_pattern_mismatch_names_value_and_pattern():
    runbook = with_param(f"{{pattern: '{VERSION_PATTERN}'}}")

    with pytest.raises(PatchbayError) as caught:
        runbook.validate_params({"version": "1.4"})

    error = caught.value
    assert (error.code, error.field) == ("invalid", "params.version")
    assert "'1.4'" in error.message
    assert VERSION_PATTERN in error.message


@pytest.mark.parametrize("value", ["1.4.2\n", "1.4.2; rm -rf /", "$(id)", " 1.4.2", "1.4.2 "])
def test_pattern_must_match_the_whole_value(value):
    runbook = with_param(f"{{pattern: '{VERSION_PATTERN}'}}")

    with pytest.raises(PatchbayError) as caught:
        runbook.validate_params({"version": value})

    assert caught.value.field == "params.version"


def test_unknown_parameter():
    runbook = with_param("{}")

    with pytest.raises(PatchbayError) as caught:
        runbook.validate_params({"version": "1", "verison": "2"})

    error = caught.value
    assert (error.code, error.field) == ("invalid", "params.verison")
    assert "'verison'" in error.message


def test_params_must_be_an_object():
    runbook = with_param("{}")

    with pytest.raises(PatchbayError) as caught:
        runbook.validate_params(["1.4.2"])

    assert (caught.value.code, caught.value.field) == ("invalid", "params")


@pytest.mark.parametrize("value", [["1.4.2"], True, False, None, {"v": 1}, 1.5],
                         ids=["list", "true", "false", "none", "dict", "float"])
def test_wrong_type_is_refused(value):
    runbook = with_param("{}")

    with pytest.raises(PatchbayError) as caught:
        runbook.validate_params({"version": value})

    assert (caught.value.code, caught.value.field) == ("invalid", "params.version")


def test_too_long_value():
    runbook = with_param("{}")

    with pytest.raises(PatchbayError, match="too long") as caught:
        runbook.validate_params({"version": "x" * (MAX_PARAM_LENGTH + 1)})

    assert caught.value.field == "params.version"


def test_longest_allowed_value_passes():
    runbook = with_param("{}")

    values = runbook.validate_params({"version": "x" * MAX_PARAM_LENGTH})

    assert values == {"version": "x" * MAX_PARAM_LENGTH}


def test_nul_byte_is_refused():
    runbook = with_param("{}")

    with pytest.raises(PatchbayError, match="NUL") as caught:
        runbook.validate_params({"version": "1.4.2\x00; reboot"})

    assert caught.value.field == "params.version"


def test_value_that_cannot_be_sent_as_utf8_is_refused():
    # A JSON body may carry a lone surrogate ("\\ud800"); it could never be encoded
    # into the SSH exec request, so it must be refused like a NUL byte.
    runbook = with_param("{}")

    with pytest.raises(PatchbayError) as caught:
        runbook.validate_params({"version": "1.4.2\ud800"})

    assert (caught.value.code, caught.value.field) == ("invalid", "params.version")


@pytest.mark.parametrize(("value", "expected"), [("12", "12"), ("-3", "-3"), (12, "12"),
                                                 (0, "0")])
def test_integer_parameter_accepts_whole_numbers(value, expected):
    runbook = with_param("{type: integer}")

    assert runbook.validate_params({"version": value}) == {"version": expected}


@pytest.mark.parametrize("value", ["1.5", "abc", "12 ", "0x10", "1e3", "--1"])
def test_integer_parameter_refuses_other_text(value):
    runbook = with_param("{type: integer}")

    with pytest.raises(PatchbayError, match="integer") as caught:
        runbook.validate_params({"version": value})

    assert caught.value.field == "params.version"


def test_defaults_are_applied_and_returned_as_strings():
    runbook = parse_runbook(GOOD, "deploy.yml")

    values = runbook.validate_params({"version": "1.4.2"})

    assert values == {"version": "1.4.2", "channel": "stable", "workers": "4"}


def test_given_values_override_defaults():
    runbook = parse_runbook(GOOD, "deploy.yml")

    values = runbook.validate_params({"version": "1.4.2", "channel": "beta", "workers": 8})

    assert values == {"version": "1.4.2", "channel": "beta", "workers": "8"}


def test_optional_parameter_without_default_is_empty():
    runbook = with_param("{required: false}")

    assert runbook.validate_params({}) == {"version": ""}


# --- rendering -----------------------------------------------------------------------

PRINTF = parse_runbook(
    "name: t\nparams:\n  p: {}\nsteps:\n  - name: s\n    run: printf -- '%s\\n' {{ params.p }}\n",
    "printf.yml")


def run_sh(command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=10,
                          check=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
               max_size=MAX_PARAM_LENGTH))
@example("it's")
@example('say "hi"')
@example("1.4.2; rm -rf /")
@example("$(id)")
@example("`id`")
@example("line one\nline two\n")
@example("  spaces  around  ")
@example("*")
@example("-n")
@example("\\n $HOME ${PATH} && || | > < & # ~")
@example("{{ params.p }}")
@example("é ünï 日本")
def test_parameter_is_one_literal_shell_argument(value):
    params = PRINTF.validate_params({"p": value})
    (step,) = PRINTF.render(params, host())

    result = run_sh(step.command)

    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == (value + "\n").encode()


def test_rendered_step_keeps_name_timeout_and_capture():
    runbook = parse_runbook(GOOD, "deploy.yml")
    params = runbook.validate_params({"version": "1.4.2"})

    fetch, report = runbook.render(params, host())

    assert (fetch.name, fetch.command, fetch.timeout, fetch.capture) == (
        "fetch", "echo fetching 1.4.2 from:stable", 30, None)
    assert (report.name, report.command, report.capture) == (
        "report", "cat /srv/game/VERSION", "version")


def test_host_fields_and_vars_are_substituted_quoted():
    runbook = parse_runbook(one_step(
        "printf '%s\\n' {{ host.name }} {{ host.address }} {{ host.port }} {{ host.user }} "
        "{{ vars.root }} {{ vars.game_port }}"), "h.yml")
    target = host(name="gs 01", address="10.0.0.11", port=2222, user="deploy",
                  vars={"root": "/srv/my game; touch /tmp/pwned", "game_port": 27015})

    (step,) = runbook.render({}, target)

    assert step.command == (
        "printf '%s\\n' 'gs 01' 10.0.0.11 2222 deploy '/srv/my game; touch /tmp/pwned' "
        "27015\n")
    result = run_sh(step.command)
    assert result.stdout.decode().splitlines() == [
        "gs 01", "10.0.0.11", "2222", "deploy", "/srv/my game; touch /tmp/pwned", "27015"]


def test_on_failure_steps_are_rendered_quoted():
    runbook = parse_runbook(GOOD, "deploy.yml")

    (rollback,) = runbook.render_on_failure({}, host(name="gs-01$(reboot)"))

    assert rollback.command == "echo rolling back " + shlex.quote("gs-01$(reboot)")


def test_missing_host_variable_names_server_and_variable():
    runbook = parse_runbook(GOOD, "deploy.yml")
    params = runbook.validate_params({"version": "1.4.2"})

    with pytest.raises(PatchbayError) as caught:
        runbook.render(params, host(name="gs-07", vars={}))

    error = caught.value
    assert error.code == "invalid"
    assert "gs-07" in error.message
    assert "'root'" in error.message
    assert "'report'" in error.message


# --- the runbook store ---------------------------------------------------------------


def bump_mtime(path: Path, seconds: int = 10) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


def test_store_reloads_a_changed_file(tmp_path):
    path = tmp_path / "deploy.yml"
    path.write_text("name: deploy\nsteps:\n  - name: s\n    run: echo one\n")
    store = RunbookStore(tmp_path)
    first = store.load()["deploy"]
    path.write_text("name: deploy\nsteps:\n  - name: s\n    run: echo two\n")  # same size
    bump_mtime(path)

    second = store.load()["deploy"]

    assert first.spec.steps[0].run == "echo one"
    assert second.spec.steps[0].run == "echo two"


def test_store_caches_while_nothing_changes(tmp_path):
    (tmp_path / "deploy.yml").write_text("name: deploy\nsteps:\n  - name: s\n    run: echo\n")
    store = RunbookStore(tmp_path)

    first = store.load()
    second = store.load()

    assert second is first


def test_store_sees_added_and_removed_files(tmp_path):
    (tmp_path / "a.yml").write_text("name: alpha\nsteps:\n  - name: s\n    run: echo\n")
    store = RunbookStore(tmp_path)
    assert list(store.load()) == ["alpha"]

    (tmp_path / "b.yml").write_text("name: beta\nsteps:\n  - name: s\n    run: echo\n")
    assert sorted(store.load()) == ["alpha", "beta"]

    (tmp_path / "a.yml").unlink()
    assert list(store.load()) == ["beta"]


def test_store_raises_for_a_broken_file_and_recovers_once_fixed(tmp_path):
    path = tmp_path / "deploy.yml"
    path.write_text("name: deploy\nsteps:\n  - name: s\n    run: echo\n")
    store = RunbookStore(tmp_path)
    store.load()
    path.write_text("name: deploy\nsteps: []\n")
    bump_mtime(path)

    with pytest.raises(RunbookError, match="deploy.yml"):
        store.load()

    path.write_text("name: deploy\nsteps:\n  - name: s\n    run: echo fixed\n")
    bump_mtime(path, 20)
    assert store.load()["deploy"].spec.steps[0].run == "echo fixed"


# --- the shipped runbooks ------------------------------------------------------------


def test_shipped_runbooks_load():
    runbooks = load_runbooks(PROJECT / "runbooks")

    assert "game-update" in runbooks
    assert "version" in runbooks["game-update"].spec.params


def test_test_runbooks_load():
    runbooks = load_runbooks(PROJECT / "tests" / "runbooks")

    assert {"basic", "sleepy"} <= set(runbooks)


def test_game_update_accepts_a_full_version():
    game = load_runbooks(PROJECT / "runbooks")["game-update"]

    assert game.validate_params({"version": "1.4.2"}) == \
        {"version": "1.4.2", "fast": "false", "drain_timeout": "300"}


@pytest.mark.parametrize("value", ["1.4", "1.4.2; rm -rf /", "$(id)", "", "1.4.2\n",
                                   "v1.4.2", "1.4.2.3"])
def test_game_update_rejects_anything_else(value):
    game = load_runbooks(PROJECT / "runbooks")["game-update"]

    with pytest.raises(PatchbayError) as caught:
        game.validate_params({"version": value})

    assert caught.value.field == "params.version"


def test_game_update_renders_for_a_host_with_its_vars():
    game = load_runbooks(PROJECT / "runbooks")["game-update"]
    target = host(vars={"root": "/srv/game", "game_port": 27015})

    steps = game.render(game.validate_params({"version": "1.4.2"}), target)

    assert [s.name for s in steps] == game.describe()["steps"]
    assert all("{{" not in s.command for s in steps)


# -- secrets (issue #12, finding 3) ---------------------------------------------------


def test_a_secret_param_and_a_secret_var_render_real_and_shown_masked():
    book = parse_runbook(one_step("login {{ params.pin }} {{ vars.key }} {{ vars.root }}",
                                  "params:\n  pin: {secret: true, pattern: '^[0-9]{4,8}$'}\n"),
                         "login.yml")
    target = host(vars={"root": "/srv/game", "key": "a key; rm -rf /"},
                  secret_vars=frozenset({"key"}))

    step = book.render(book.validate_params({"pin": "123456"}), target)[0]

    assert step.command == "login 123456 'a key; rm -rf /' /srv/game\n"
    assert step.shown == "login •••• •••• /srv/game\n"
    assert book.secret_params() == {"pin"}


def test_a_step_without_secrets_is_shown_as_it_runs():
    book = parse_runbook(one_step("echo v={{ params.v }}", "params:\n  v: {}\n"), "echo.yml")

    step = book.render({"v": "x"}, host())[0]

    assert step.shown == step.command == "echo v=x\n"


def test_secret_must_be_a_boolean():
    with pytest.raises(RunbookError, match="params.pin.secret"):
        parse_runbook(one_step("echo {{ params.pin }}", "params:\n  pin: {secret: maybe}\n"),
                      "x.yml")


# -- audit 3b, item 4: patterns run by RE2, never by a backtracking matcher ------------

CATASTROPHIC = "^(a|aa)+$"  # Python's re tries every split of the a's: 2^n steps


def pattern_runbook(pattern: str, until: str = "^ready$") -> str:
    return (f"name: t\nparams:\n  v:\n    pattern: '{pattern}'\nsteps:\n"
            f"  - name: s\n    run: echo\n  - name: w\n    wait:\n      command: echo\n"
            f"      until: '{until}'\n")


def test_audit3b_4_a_catastrophic_pattern_is_answered_at_once(monkeypatch):
    from tasks.planning import safe_regex

    compiled: list[str] = []
    real = safe_regex.re2.compile
    monkeypatch.setattr(safe_regex.re2, "compile",
                        lambda pattern, options: compiled.append(pattern)
                        or real(pattern, options))
    safe_regex._compiled.cache_clear()
    book = parse_runbook(pattern_runbook(CATASTROPHIC), "slow.yml")
    answers: list[object] = []

    def validate() -> None:  # about an hour with Python's re; RE2 is linear
        for value in ("a" * 60 + "b", "a" * 60):
            try:
                answers.append(book.validate_params({"v": value}))
            except PatchbayError as exc:
                answers.append(exc.field)

    worker = threading.Thread(target=validate, daemon=True)
    worker.start()
    worker.join(timeout=30)  # a sanity bound only: RE2 answers in microseconds

    assert answers == ["params.v", {"v": "a" * 60}]
    assert CATASTROPHIC in compiled, "RE2 compiled the pattern that matched"
    assert safe_regex.search_lines(CATASTROPHIC, "x\n" + "a" * 5000) is True


@pytest.mark.parametrize(("text", "field", "line"), [
    (pattern_runbook(r"^(a)\1$"), "params.v.pattern", 4),
    (pattern_runbook("^[a-z]+$", until="(?<=ready)$"), "steps.1.wait.until", 11),
    (pattern_runbook("^x{1,2000}$"), "params.v.pattern", 4),
    (pattern_runbook("^[[:punct:]]+$"), "params.v.pattern", 4),
], ids=["back-reference", "lookbehind", "repeat-count", "posix-class"])
def test_audit3b_4_a_pattern_re2_cannot_run_is_refused_at_load_with_file_and_line(
        text, field, line):
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "broken.yml")

    message = str(caught.value)
    assert message.startswith(f"broken.yml: field {field}: ")
    assert message.endswith(f" (line {line})")
    assert "RE2" in message or "POSIX" in message


def test_audit3b_4_a_long_probe_output_is_cut_before_it_is_matched():
    from tasks.planning.safe_regex import MAX_MATCHED_CHARS, search_lines

    filler = "x" * (MAX_MATCHED_CHARS - len("ready") - 1)

    assert search_lines("^ready$", f"{filler}\nready") is True
    assert search_lines("^ready$", f"{filler}x\nready") is False, "past the cut"
    assert search_lines("^0$", "players\n0\n") is True  # ^ and $ match at each line
