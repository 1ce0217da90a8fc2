"""No input becomes a command it was not meant to be, checked over real SSH."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.errors import PatchbayError
from tasks.runbook_store import RunbookStore
from tasks.runbooks import HostContext
from tasks.ssh import SSHHostSession
from tasks.transport import StepLocation, Target
from tests.conftest import TEST_RUNBOOKS

NASTY = ["'", '"', ";", "$(id)", "`id`", "\n", "|", "&&", "*", "$HOME", "\\", " ", "#", "-e"]


@pytest.fixture(scope="module")
def remote(sshd_fleet):
    host = sshd_fleet.hosts[0]
    session = SSHHostSession(Target(host.name, host.address, host.port, "root",
                                str(sshd_fleet.client_key), str(sshd_fleet.known_hosts)))
    session.connect()
    yield session, HostContext(host.name, host.address, host.port, "root", {})
    session.close()


class RunToTheEnd:
    """A step control that never stops the step."""

    def stop_reason(self) -> None:
        return None

    def tick(self) -> None:
        return None


step_numbers = itertools.count()


def arguments_seen(remote, value: str) -> list[bytes]:
    session, host = remote
    runbook = RunbookStore(TEST_RUNBOOKS).load()["echo-arg"]
    step = runbook.render(runbook.validate_params({"value": value}), host)[0]
    lines: list[str] = []
    where = StepLocation("~/.patchbay/test-runs", "security", host.name,
                         str(next(step_numbers)))
    result = session.start_step(where, step.command,
                                lambda stream, line, offset: lines.append(line), RunToTheEnd())
    assert result.exit_code == 0
    return [bytes.fromhex(line) for line in lines]


values = st.lists(st.one_of(st.sampled_from(NASTY), st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\x00")), min_size=1, max_size=20
).map("".join)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_a_valid_parameter_reaches_the_remote_shell_as_one_literal_argument(remote, value):
    assert arguments_seen(remote, value) == [value.encode()]


@settings(max_examples=60, deadline=None)
@given(word=st.text(min_size=1, max_size=20).filter(
    lambda text: not (text.isascii() and text.isalpha() and text.islower() and len(text) <= 16)))
def test_a_parameter_failing_validation_starts_nothing(word):
    runbook = RunbookStore(TEST_RUNBOOKS).load()["echo-arg"]
    with pytest.raises(PatchbayError) as refused:
        runbook.validate_params({"value": "ok", "word": word})
    assert refused.value.field == "params.word"
