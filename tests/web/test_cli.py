"""The ``patchbay`` CLI as a real subprocess (``.venv/bin/patchbay``, installed by
``make``) against a real console process over the demo fleet: token login, following a
rollout through a dropped connection with every line printed once, exit statuses, the
HTTP fallback, and plain lines when stdout is not a terminal."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, PROJECT, TEST_RUNBOOKS
from tests.support.console_proxy import Proxy
from tests.support.console_world import stored_events
from tests.support.live_server import LiveServer, start_live_server
from tests.support.waiting import wait_until

PATCHBAY = Path(sys.executable).with_name("patchbay")
OUTPUT_LINE = re.compile(r"^(\S+) +([|!]) (.*)$", re.S)
USERS = [("alice", PASSWORD, "operator"), ("vic", PASSWORD, "viewer")]


@pytest.fixture(scope="module")
def console(tmp_path_factory, demo_fleet) -> LiveServer:
    """One console for the module, over the demo fleet, with the demo's game-update
    and the test runbook handoff (holds until a file appears; the demo hosts have the
    ``root`` it needs)."""
    directory = tmp_path_factory.mktemp("cli-console")
    books = directory / "runbooks"
    books.mkdir()
    shutil.copy(PROJECT / "runbooks" / "game-update.yml", books)
    shutil.copy(TEST_RUNBOOKS / "handoff.yml", books)
    server = start_live_server(directory / "live", inventory=Path(demo_fleet["inventory"]),
                               runbook_dir=books, users=USERS)
    yield server
    server.stop()


def flask_command(server: LiveServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args],
                          cwd=PROJECT, env={**server.env, "PATCHBAY_PORT": "1"},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def token(console) -> str:
    """alice's token, made as an admin would: ``flask create-token`` (last line)."""
    made = flask_command(console, "create-token", "alice", "--name", "ci")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture
def api(console, token) -> requests.Session:
    """Another client of the console, straight to it (never through a proxy)."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment: its own config folder, no PATCHBAY_* from outside, and no
    COLUMNS or LINES from the shell that runs the tests (the CLI wraps to COLUMNS; a test
    that wants a width passes it)."""
    assert PATCHBAY.exists(), f"{PATCHBAY} is missing: `make venv` installs the CLI"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PATCHBAY_") and k not in ("COLUMNS", "LINES")}
    return {**env, "XDG_CONFIG_HOME": str(home / "config"), **extra}


def patchbay(*args: str, env: dict[str, str], stdin: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(PATCHBAY), *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=timeout)


class Lines:
    """A pipe's lines as they arrive (bytes split at ``\\n`` only), read by a thread."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for raw in iter(pipe.readline, b""):
            self.lines.append(raw.decode().removesuffix("\n"))

    def wait_for(self, pattern: str, what: str, timeout: float = 60) -> str:
        return wait_until(lambda: next((line for line in list(self.lines)
                                        if re.search(pattern, line)), None),
                          timeout=timeout, what=what)

    def finish(self) -> list[str]:
        self._thread.join(timeout=30)
        return self.lines


class Running:
    """A CLI process, its stdout and stderr read as they come."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([str(PATCHBAY), *args], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.out = Lines(self.process.stdout)
        self.err = Lines(self.process.stderr)

    def job_id(self) -> int:
        return int(re.match(r"job #(\d+) ", self.out.wait_for(r"^job #\d+ ",
                                                             "the job's first line")).group(1))

    def wait(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout=timeout)
        self.out.finish()
        self.err.finish()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def printed_output(lines: list[str]) -> list[tuple[str, str, str]]:
    """(server, mark, text) of every output line the CLI printed, in order."""
    return [match.groups() for line in lines if (match := OUTPUT_LINE.match(line))]


def logged_output(events: list[dict]) -> list[tuple[str, str, str]]:
    """The same, from the console's event log, in seq order."""
    return [(e["host"], "!" if e["data"]["stream"] == "stderr" else "|", line)
            for e in events if e["type"] == "output" for line in e["data"]["lines"]]


def job_status(console: LiveServer, api: requests.Session, job_id: int) -> str:
    return api.get(f"{console.url}/api/jobs/{job_id}", timeout=10).json()["job"]["status"]


def event(seq: int, kind: str = "output", host: str | None = "gs-01", /, **data) -> dict:
    return {"seq": seq, "ts": 0.0, "type": kind, "host": host, "data": data}


@pytest.mark.parametrize("arrivals", [
    [[1, 2, 3, 4, 5]],
    [[3, 4], [1, 2, 3], [5, 4]],  # live before the replay: the replay is not swallowed
    [[5], [4], [3], [2], [1]],
    [[1, 2], [1, 2], [2, 3, 4, 5], [5]],  # a replay overlapping what was shown
], ids=["in order", "live first", "backwards", "overlapping"])
def test_every_event_is_handed_on_once_in_seq_order(arrivals):
    from patchbay_cli.follow import EventLog

    log = EventLog()
    shown = [e["seq"] for batch in arrivals for e in log.add([event(s) for s in batch])]

    assert shown == [1, 2, 3, 4, 5]
    assert (log.shown, log.pending, log.waiting_since) == (5, {}, None)


def test_an_event_beyond_a_hole_waits_for_it_and_the_end_is_kept():
    from patchbay_cli.follow import EventLog

    log = EventLog(after_seq=10)
    assert log.add([event(9), event(12, "job_finished", None, status="failed")]) == []
    assert log.waiting_since is not None and not log.finished
    assert [e["seq"] for e in log.add([event(11)])] == [11, 12]
    assert log.finished and log.final["data"]["status"] == "failed"


def test_plain_lines_name_the_server_and_mark_the_stream():
    import io

    from patchbay_cli.plain import PlainRenderer

    out = io.StringIO()
    renderer = PlainRenderer(7, stream=out)
    renderer.begin({"id": 7, "runbook": "game-update", "kind": "runbook",
                    "params": {"version": "1.4.2"}, "status": "running",
                    "hosts": [{"name": "gs-01"}, {"name": "eu-game-02"}]}, "http://c/jobs/7")
    renderer.show([
        event(1, "job_started", None, runbook="game-update", kind="runbook",
              params={"version": "1.4.2"}, strategy={"parallel": 2},
              servers=["gs-01", "eu-game-02"], batches=[["gs-01"], ["eu-game-02"]],
              steps=["deploy", "check"]),
        event(2, "step_started", step="deploy", index=0, phase="steps"),
        event(3, stream="stdout", step="deploy", lines=["[ok] a | b", ""]),
        event(4, stream="stderr", step="deploy", lines=["warning"]),
        event(5, "step_finished", step="deploy", index=0, phase="steps", status="failed",
              exit_code=3, duration=0.25, reason="exit status 3"),
        event(6, "host_finished", status="failed", failed_step="deploy", exit_code=3),
        event(7, "a_type_from_the_future", None),
        event(8, "job_finished", None, status="failed", duration=75,
              counts={"succeeded": 0, "failed": 1, "skipped": 1},
              reason="a canary failed"),
    ])

    assert out.getvalue().splitlines() == [
        "job #7 game-update (version=1.4.2), running: http://c/jobs/7",
        "job #7     * started game-update (version=1.4.2) on 2 servers (2 batches, "
        "2 at once)",
        "gs-01      * step 1/2: deploy",
        "gs-01      | [ok] a | b",
        "gs-01      | ",
        "gs-01      ! warning",
        "gs-01      * deploy failed (exit 3) in 0.2 s: exit status 3",
        "gs-01      * failed at deploy (exit 3)",
        "job #7 failed in 1 min 15 s: 1 failed, 1 skipped (a canary failed)",
    ]


@pytest.mark.live
def test_login_stores_a_private_token_that_later_commands_use(console, tmp_path):
    env = cli_env(tmp_path)

    wrong = patchbay("login", console.url, "--username", "alice", "--password-stdin",
                     env=env, stdin="not the password\n")
    made = patchbay("login", console.url, "--username", "alice", "--password-stdin",
                    "--name", "laptop", env=env, stdin=PASSWORD + "\n")
    listed = patchbay("servers", env=env)  # no --url, no --token: the stored ones

    assert (wrong.returncode, made.returncode, listed.returncode) == (3, 0, 0), \
        (wrong.stderr, made.stderr, listed.stderr)
    assert "wrong user name or password" in wrong.stderr
    path = tmp_path / "config" / "patchbay" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert PASSWORD not in path.read_text()
    entry = stored["consoles"][console.url]
    assert stored["default_url"] == console.url and entry["token"].startswith("pbt_")
    assert (entry["user"], entry["name"], entry["role"]) == ("alice", "laptop", "operator")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == \
        [f"gs-0{i}" for i in range(1, 9)]

    # logout revokes the token it made: it no longer works anywhere.
    assert patchbay("logout", env=env).returncode == 0
    after = patchbay("--url", console.url, "--token", entry["token"], "jobs", env=env)
    assert after.returncode == 3
    assert "authentication failed: this token was revoked" in after.stderr
    assert json.loads(path.read_text())["consoles"] == {}


@pytest.mark.live
def test_usage_token_and_connection_errors_exit_3(console, token, tmp_path):
    env = cli_env(tmp_path)
    good = cli_env(tmp_path, PATCHBAY_URL=console.url, PATCHBAY_TOKEN=token)

    listed = patchbay("jobs", env=good)
    books = patchbay("runbooks", env=good)
    no_url = patchbay("jobs", env=env)
    bad_token = patchbay("--url", console.url, "--token", "pbt_nonsense", "run",
                         "game-update", "-p", "version=1.2.3", "--tags", "demo",
                         "--follow", env=env)
    no_servers = patchbay("run", "game-update", "-p", "version=1.2.3", env=good)
    bad_param = patchbay("run", "game-update", "-p", "version=latest", "--servers", "gs-01",
                         env=good)
    nobody_home = patchbay("--url", "http://127.0.0.1:9", "--token", token, "jobs", env=env)

    assert (listed.returncode, books.returncode) == (0, 0), listed.stderr + books.stderr
    assert listed.stdout.split()[:2] == ["JOB", "STATUS"]
    assert "game-update" in books.stdout and "handoff" in books.stdout
    assert [r.returncode for r in (no_url, bad_token, no_servers, bad_param, nobody_home)] \
        == [3] * 5
    assert "no console URL" in no_url.stderr
    assert "authentication failed: unknown token" in bad_token.stderr
    assert "choose servers" in no_servers.stderr
    # In words where the runbook gives a pattern_hint, else the pattern itself.
    assert ("version must be" in bad_param.stderr or "does not match" in bad_param.stderr) \
        and "params.version" in bad_param.stderr
    assert "cannot reach the console at http://127.0.0.1:9" in nobody_home.stderr


@pytest.mark.live
def test_run_follow_over_a_dropped_connection_prints_the_logged_output_once(
        console, token, api, demo_fleet, tmp_path):
    """The connection drops mid-rollout and stays down while the rollout goes on and
    ends; once it is back, the CLI resumes by seq: every line once, in order."""
    proxy = Proxy(console.port)
    fleet_pid = demo_fleet["pid"]
    cli = Running("--url", proxy.url, "--token", token, "run", "game-update", "-p",
                  "version=3.1.4", "-p", "fast=true", "--tags", "demo", "--parallel", "2",
                  "--follow", env=cli_env(tmp_path))
    try:
        job_id = cli.job_id()
        cli.out.wait_for(r"^gs-0\d +\| ", "the first output line")
        # Hold the rollout: the frozen fleet runs no further step until SIGCONT.
        os.kill(fleet_pid, signal.SIGSTOP)
        try:
            proxy.cut()
            cli.err.wait_for("live connection .* lost", "the CLI noticing the drop")
            cli.err.wait_for("cannot reach the console .*; retrying",
                             "the CLI failing to reconnect")
        finally:
            os.kill(fleet_pid, signal.SIGCONT)
        wait_until(lambda: job_status(console, api, job_id) == "succeeded", timeout=120,
                   what="the rollout ending while the CLI is cut off")
        assert not any(line.startswith(f"job #{job_id} succeeded") for line in cli.out.lines)
        proxy.restore()
        code = cli.wait()
    finally:
        cli.stop()
        proxy.stop()

    events = stored_events(console, api, job_id)
    assert code == 0, cli.err.lines
    assert printed_output(cli.out.lines) == logged_output(events)
    assert len({host for host, _, _ in printed_output(cli.out.lines)}) == 8
    assert re.fullmatch(rf"job #{job_id} succeeded in .*: 8 succeeded", cli.out.lines[-1])
    # Plain lines for a pipe: no escape codes, every line a server's, a job's or the end.
    assert not any("\x1b" in line for line in cli.out.lines)
    assert all(re.match(r"^(gs-0\d|job #\d+) +[|!*] |^job #\d+ ", line)
               for line in cli.out.lines)
    assert sum(re.match(r"^gs-0\d +\* succeeded in ", line) is not None
               for line in cli.out.lines) == 8


@pytest.mark.live
def test_a_failing_command_exits_1_with_both_streams_marked(console, token, api, tmp_path):
    env = cli_env(tmp_path, PATCHBAY_URL=console.url, PATCHBAY_TOKEN=token)
    command = ('echo "hello from $PATCHBAY_DEMO_HOST"; echo "careful" >&2; '
               'if [ "$PATCHBAY_DEMO_HOST" = gs-02 ]; then exit 3; fi')

    result = patchbay("exec", command, "--servers", "gs-01,gs-02", "--follow", env=env)

    assert result.returncode == 1, result.stderr
    job_id = int(re.match(r"job #(\d+) ", result.stdout).group(1))
    lines = result.stdout.splitlines()
    assert printed_output(lines) == logged_output(stored_events(console, api, job_id))
    assert ("gs-02", "!", "careful") in printed_output(lines)
    assert any(re.match(r"^gs-02 +\* failed at command \(exit 3\)", line) for line in lines)
    assert re.fullmatch(rf"job #{job_id} failed in .*: 1 succeeded, 1 failed.*", lines[-1])


@pytest.mark.live
def test_ctrl_c_stops_following_and_a_cancel_elsewhere_exits_2(console, token, api,
                                                                 demo_fleet, tmp_path):
    release = Path(demo_fleet["state_dir"]) / "hosts" / "gs-08" / "release"
    release.unlink(missing_ok=True)  # handoff holds until this file appears
    env = cli_env(tmp_path, PATCHBAY_URL=console.url, PATCHBAY_TOKEN=token)
    started = patchbay("run", "handoff", "-p", "fail_on=none", "--servers", "gs-08",
                       env=env)
    assert started.returncode == 0, started.stderr
    job_id = int(started.stdout.strip())  # without --follow: the job id alone

    watcher = Running("logs", str(job_id), "--follow", env=env)
    try:
        watcher.out.wait_for(r"^gs-08 +\| holding$", "the held step's first line")
        watcher.process.send_signal(signal.SIGINT)
        stopped = watcher.wait()
    finally:
        watcher.stop()
    assert stopped == 130
    assert f"stopped following job #{job_id}; it goes on running" in "".join(
        watcher.err.lines)
    assert f"patchbay cancel {job_id}" in "".join(watcher.err.lines)
    assert job_status(console, api, job_id) == "running"

    follower = Running("logs", str(job_id), "--follow", env=env)
    try:
        follower.out.wait_for(r"^gs-08 +\| holding$", "the held step's first line")
        cancelled = api.post(f"{console.url}/api/jobs/{job_id}/cancel", timeout=10).json()
        code = follower.wait()
    finally:
        follower.stop()
    assert cancelled["cancelled"] is True
    assert code == 2, follower.err.lines
    assert re.fullmatch(rf"job #{job_id} cancelled in .*: 1 cancelled", follower.out.lines[-1])


@pytest.mark.live
def test_a_token_revoked_while_following_ends_it_with_3(console, api, demo_fleet, tmp_path):
    (Path(demo_fleet["state_dir"]) / "hosts" / "gs-07" / "release").unlink(missing_ok=True)
    env = cli_env(tmp_path)
    login = patchbay("login", console.url, "-u", "alice", "--password-stdin", env=env,
                     stdin=PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    job_id = int(patchbay("run", "handoff", "-p", "fail_on=none", "--servers", "gs-07",
                          env=env).stdout)
    follower = Running("logs", str(job_id), "--follow", env=env)
    try:
        follower.out.wait_for(r"^gs-07 +\| holding$", "the held step's first line")
        assert patchbay("logout", env=env).returncode == 0  # revokes the stored token
        code = follower.wait()
    finally:
        follower.stop()
        api.post(f"{console.url}/api/jobs/{job_id}/cancel", timeout=10)
        wait_until(lambda: job_status(console, api, job_id) == "cancelled",
                   what="the held job cancelled")

    assert code == 3
    assert "authentication failed: this token was revoked" in "".join(follower.err.lines)


@pytest.mark.live
def test_without_websockets_it_follows_over_http(console, token, api, tmp_path):
    proxy = Proxy(console.port, refuse_websocket=True)
    env = cli_env(tmp_path, PATCHBAY_URL=proxy.url, PATCHBAY_TOKEN=token)
    try:
        result = patchbay("exec", "for i in 1 2 3; do echo \"tick $i\"; sleep 0.2; done",
                          "--tags", "eu", "--follow", env=env)
    finally:
        proxy.stop()

    assert result.returncode == 0, result.stderr
    assert proxy.websocket_refusals >= 1
    assert "following over HTTP" in result.stderr
    job_id = int(re.match(r"job #(\d+) ", result.stdout).group(1))
    printed = printed_output(result.stdout.splitlines())
    assert printed == logged_output(stored_events(console, api, job_id))
    assert len(printed) == 4 * 3  # the eu servers: gs-01, 03, 05, 07


@pytest.mark.live
def test_on_a_terminal_it_draws_a_progress_bar_per_server(console, token, api, tmp_path):
    import pty

    env = cli_env(tmp_path, PATCHBAY_URL=console.url, PATCHBAY_TOKEN=token,
                  COLUMNS="120", TERM="xterm")
    ran = patchbay("exec", "echo one; echo two", "--servers", "gs-03,gs-04", "--follow",
                   env=env)
    assert ran.returncode == 0, ran.stderr
    job_id = int(re.match(r"job #(\d+) ", ran.stdout).group(1))

    leader, follower = pty.openpty()
    process = subprocess.Popen([str(PATCHBAY), "logs", str(job_id), "--follow"], env=env,
                               stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the CLI has exited
                break
            if not chunk:
                break
            screen += chunk
        code = process.wait(timeout=10)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))

    assert code == 0
    assert "\x1b[" in screen.decode(errors="replace")  # drawn, not plain
    assert re.search(r"gs-03 .*━.* 1/1 .*succeeded", text)
    assert re.search(r"gs-04 .*━.* 1/1 .*succeeded", text)
    assert re.search(r"gs-03 +\| one", text) and f"job #{job_id} succeeded" in text


@pytest.mark.live
def test_a_followed_rollout_pauses_at_its_gate_until_promote(console, token, demo_fleet,
                                                            tmp_path):
    for name in ("gs-06", "gs-07"):  # handoff goes straight through on these
        (Path(demo_fleet["state_dir"]) / "hosts" / name / "release").touch()
    env = cli_env(tmp_path, PATCHBAY_URL=console.url, PATCHBAY_TOKEN=token)
    refused = patchbay("run", "handoff", "-p", "fail_on=none", "--servers", "gs-06,gs-07",
                       "--gate", "later", env=env)

    follower = Running("run", "handoff", "-p", "fail_on=none", "--servers", "gs-06,gs-07",
                       "--batches", "1", "--gate", "manual", "--follow", env=env)
    try:
        job_id = follower.job_id()
        follower.out.wait_for(r"paused after batch 1", "the pause")
        promoted = patchbay("promote", str(job_id), env=env)
        code = follower.wait()
    finally:
        follower.stop()

    assert refused.returncode == 3 and "--gate later: choose auto, manual or soak=SECONDS" \
        in refused.stderr
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.strip() == f"promoting job #{job_id}"
    assert code == 0, follower.err.lines
    assert any(re.search(rf"job #{job_id} +\* paused after batch 1: waiting for an "
                         rf"operator to promote it \(patchbay promote {job_id}\)", line)
               for line in follower.out.lines)
    assert any(re.search(r"\* promoted by alice: batch 2 starts", line)
               for line in follower.out.lines)
    assert re.fullmatch(rf"job #{job_id} succeeded in .*: 2 succeeded", follower.out.lines[-1])
