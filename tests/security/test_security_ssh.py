"""No input becomes a command it was not meant to be, checked over real SSH."""

from __future__ import annotations

import fcntl
import itertools
import subprocess
import sys
import threading
from pathlib import Path

import paramiko
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.errors import PatchbayError
from tasks.planning.runbook_store import RunbookStore
from tasks.transport.connecting import connect_failure_kind
from tasks.transport.host_keys import record_host_key
from tasks.transport.protocol import StepLocation, Target
from tasks.transport.ssh import SSHError, SSHHostSession
from tests.conftest import PROJECT, TEST_RUNBOOKS
from tests.support.remote import RunToTheEnd, host_session
from tests.support.waiting import wait_until

NASTY = ["'", '"', ";", "$(id)", "`id`", "\n", "|", "&&", "*", "$HOME", "\\", " ", "#", "-e"]


@pytest.fixture(scope="module")
def remote(sshd_fleet):
    with host_session(sshd_fleet, 0) as opened:
        yield opened




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


# -- finding 9: trust-on-first-use writes, and what a failure reason reveals ------------

RECORDER = """
import sys, time
from pathlib import Path
import paramiko
from tasks.transport.host_keys import record_host_key
known_hosts, key_file, own, go = sys.argv[1:]
key = paramiko.PKey.from_path(key_file)
deadline = time.monotonic() + 30
while not Path(go).exists():  # start together with the other writer
    assert time.monotonic() < deadline, "never told to go"
    time.sleep(0.001)
for i in range(100):  # a host of its own, then one the other writer meets too
    record_host_key(Path(known_hosts), f"[10.{own}.0.{i}]:2222", key)
    record_host_key(Path(known_hosts), f"[10.0.0.{i}]:2222", key)
"""


def new_key(path: Path) -> paramiko.PKey:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return paramiko.PKey.from_path(path)


def test_finding_9_accept_new_appends_under_lock(tmp_path):
    known_hosts = tmp_path / "tofu" / "known_hosts"
    key = new_key(tmp_path / "host_key")
    go = tmp_path / "go"
    # Two processes, at once: 100 hosts each of its own, and 100 hosts both meet.
    writers = [subprocess.Popen([sys.executable, "-c", RECORDER, str(known_hosts),
                                 str(tmp_path / "host_key"), own, str(go)],
                                cwd=PROJECT, stderr=subprocess.PIPE, text=True)
               for own in ("1", "2")]
    go.touch()
    errors = [writer.communicate(timeout=60)[1] for writer in writers]

    lines = known_hosts.read_text().splitlines()
    assert errors == ["", ""]
    assert [writer.returncode for writer in writers] == [0, 0]
    assert sorted(line.split()[0] for line in lines) == sorted(
        f"[10.{own}.0.{i}]:2222" for own in (0, 1, 2) for i in range(100))
    assert {tuple(line.split()[1:]) for line in lines} == {(key.get_name(), key.get_base64())}
    assert all(len(line.split()) == 3 for line in lines)


def lock_waiter(pid: int) -> bool:
    """Whether process ``pid`` waits for a file lock (a "->" line of /proc/locks)."""
    return any(line.split()[1:2] == ["->"] and str(pid) in line.split()
               for line in Path("/proc/locks").read_text().splitlines())


def test_finding_9_accept_new_waits_for_the_lock_then_reads_the_file_again(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    key = new_key(tmp_path / "host_key")
    line = f"[10.0.0.1]:2222 {key.get_name()} {key.get_base64()}\n"
    record_one = ("import sys, paramiko; from pathlib import Path; "
                  "from tasks.transport.host_keys import record_host_key; "
                  "record_host_key(Path(sys.argv[1]), '[10.0.0.1]:2222', "
                  "paramiko.PKey.from_path(sys.argv[2]))")

    with open(known_hosts, "a", encoding="ascii") as other_writer:
        fcntl.flock(other_writer, fcntl.LOCK_EX)
        writer = subprocess.Popen([sys.executable, "-c", record_one, str(known_hosts),
                                   str(tmp_path / "host_key")], cwd=PROJECT)
        wait_until(lambda: lock_waiter(writer.pid) or writer.poll() is not None,
                   timeout=30, what="the writer to wait for the lock")
        waited = writer.poll() is None
        other_writer.write(line)  # the other writer records the same host meanwhile
    exit_code = writer.wait(timeout=30)

    assert (waited, exit_code) == (True, 0)
    assert known_hosts.read_text() == line


def test_finding_9_accept_new_refuses_a_key_another_writer_recorded_differently(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    first, second = new_key(tmp_path / "first"), new_key(tmp_path / "second")
    record_host_key(known_hosts, "[10.0.0.1]:22", first)

    record_host_key(known_hosts, "[10.0.0.1]:22", first)  # met again: nothing new
    with pytest.raises(paramiko.BadHostKeyException):
        record_host_key(known_hosts, "[10.0.0.1]:22", second)

    assert known_hosts.read_text() == f"[10.0.0.1]:22 ssh-ed25519 {first.get_base64()}\n"


def test_finding_9_accept_new_records_each_host_once_when_sessions_meet_it_at_once(
        sshd_fleet, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    targets = [Target(h.name, h.address, h.port, "root", str(sshd_fleet.client_key),
                      str(known_hosts), accept_new_host_keys=True)
               for h in sshd_fleet.hosts for _ in range(2)]
    sessions = [SSHHostSession(target, connect_timeout=10) for target in targets]
    failures: list[Exception] = []

    def connect(session: SSHHostSession) -> None:
        try:
            session.connect()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=connect, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for session in sessions:
        session.close()

    names = sorted(line.split()[0] for line in known_hosts.read_text().splitlines())
    assert failures == []
    assert names == sorted(f"[{h.address}]:{h.port}" for h in sshd_fleet.hosts)


def test_building_sessions_in_threads_never_writes_the_shared_fabric_config(tmp_path):
    """Connections share one Fabric config; a write re-merges it, and a connection
    built meanwhile in another thread read it empty (CI, stop 20: AttributeError on
    one server of eight)."""
    targets = [Target(f"h{i}", f"127.0.0.{i + 1}", 2200 + i, "root", None,
                      str(tmp_path / "known_hosts")) for i in range(40)]
    failures: list[Exception] = []
    sessions: list[SSHHostSession] = []

    def build(batch: list[Target]) -> None:
        try:
            sessions.extend(SSHHostSession(target, connect_timeout=7) for target in batch)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=build, args=(targets[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert len(sessions) == len(targets)
    configs = {id(session.connection.config) for session in sessions}
    assert len(configs) == 1
    shared = sessions[0].connection.config
    assert shared._modifications == {}
    for session in sessions:
        assert session.connection.inline_ssh_env is True
        assert session.connection.connect_timeout == 7
        assert session.connection.port == session.target.port


@pytest.mark.parametrize("kind", ["missing", "a directory", "encrypted", "not a key"])
def test_finding_9_failure_reason_names_key_file_not_path(sshd_fleet, tmp_path, kind):
    folder = tmp_path / "some" / "dir" / "secret_dir"
    folder.mkdir(parents=True)
    key_file = folder / "id_missing"
    if kind == "a directory":
        key_file.mkdir()
    elif kind == "encrypted":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f",
                        str(key_file)], check=True)
    elif kind == "not a key":
        key_file.write_text("ssh-ed25519 AAAA this is a public key line\n")
    host = sshd_fleet.hosts[2]
    session = SSHHostSession(Target(host.name, host.address, host.port, "root",
                                    str(key_file), str(sshd_fleet.known_hosts)),
                             connect_timeout=5)

    with pytest.raises(SSHError) as failed:
        session.connect()
    session.close()

    reason = str(failed.value)
    assert reason.startswith("private key file id_missing ")
    assert "secret_dir" not in reason and str(tmp_path) not in reason
    assert connect_failure_kind(failed.value) == "auth"
