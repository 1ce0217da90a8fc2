"""Start means started: the demo game-update runbook, run by the engine over a real OpenSSH
sshd on loopback, on a host laid out as the demo fleet lays one out. Its ``start`` step
accepts only the game server it launched (the pid in the greeting), not an old process
still bound to the port; its health check only the pid the start recorded; and a
clean update says nothing on stderr. Also the greeting itself (``pid=``) and ``probe
--pid``, which falls back to /proc for an older server's greeting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from demo import gameserver
from tests.conftest import PROJECT, write_inventory
from tests.support.engine_world import build_world
from tests.support.sshd_fleet import free_port
from tests.support.waiting import wait_until

GAME = PROJECT / "demo" / "gameserver.py"
HOST = "gs-01"


class GameHost:
    """The sshd host the jobs run on: its address, game port and demo root."""

    def __init__(self, address: str, port: int, root: Path) -> None:
        self.address, self.port, self.root = address, port, root

    def answering(self) -> gameserver.Greeting:
        return gameserver.probe(self.address, self.port, timeout=10)

    def started_pid(self) -> int | None:
        path = self.root / "run" / "game.started"
        return int(path.read_text()) if path.exists() else None


def health_only_runbook(directory: Path) -> None:
    """``game-health``: game-update's own health check step, alone (what a soak runs)."""
    book = yaml.safe_load((PROJECT / "runbooks" / "game-update.yml").read_text())
    step = next(s for s in book["steps"] if s["name"] == "health check")
    (directory / "game-health.yml").write_text(yaml.safe_dump({
        "name": "game-health", "description": "game-update's health check alone",
        "params": book["params"], "steps": [step]}))


@pytest.fixture
def game_host(app, sshd_fleet, tmp_path):
    from demo.hosts import DemoHost
    from demo.sshfleet import prepare_host_dir
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory

    ssh_host = sshd_fleet.hosts[-1]
    host = GameHost(ssh_host.address, free_port(), tmp_path / "host")
    prepare_host_dir(DemoHost(1, HOST, host.address, host.root, tmp_path / "host_key"),
                     tmp_path / "mirror")
    (tmp_path / "mirror").mkdir(exist_ok=True)
    entry = {**sshd_fleet.inventory_entries()[-1], "name": HOST,
             "vars": {"root": str(host.root), "game_port": host.port}}
    inventory = write_inventory(tmp_path / "inventory.yml", [entry])
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text()))
        db.session.commit()
    yield host
    stop_host_game(host)


def stop_host_game(host: GameHost) -> None:
    """SIGTERM the game server named in the host's pid file; wait until it is gone."""
    pid_file = host.root / "run" / "game.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    wait_until(lambda: not pid_file.exists(), 15, "the host's game server stopped")


@pytest.fixture
def world(app, game_host, tmp_path):
    books = tmp_path / "runbooks"
    books.mkdir()
    (books / "game-update.yml").write_text((PROJECT / "runbooks" / "game-update.yml")
                                           .read_text())
    health_only_runbook(books)
    return build_world(app, books)


@pytest.fixture
def foreign_game(tmp_path):
    """Start a game server that no step of the host started (an old install elsewhere
    still bound to the port): ``foreign_game(host, version)`` -> its process."""
    started: list[subprocess.Popen] = []

    def start(host: GameHost, version: str) -> subprocess.Popen:
        where = tmp_path / f"old-install-{len(started)}"
        where.mkdir()
        (where / "VERSION").write_text(f"{version}\n")
        process = subprocess.Popen(
            [sys.executable, str(GAME), "serve", "--host", host.address,
             "--port", str(host.port), "--version-file", str(where / "VERSION"),
             "--pid-file", str(where / "game.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        assert host.answering() == gameserver.Greeting(version, process.pid)
        return process

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def run(world, runbook: str, version: str, **params: str):
    job_id = world.engine.start(world.engine.plan(
        runbook, {"version": version, "fast": "true", **params}, [HOST]), None)
    job = world.wait_finished(job_id, timeout=120)
    return job, world.events(job_id)


def lines(events: list[dict], stream: str, step: str | None = None) -> list[str]:
    return [line for e in events if e["type"] == "output" and e["data"]["stream"] == stream
            and step in (None, e["data"]["step"]) for line in e["data"]["lines"]]


def failure(job) -> tuple:
    (host,) = job.hosts
    return host.status, host.failed_step


# -- the runbook over sshd ---------------------------------------------------------------


def test_start_refuses_a_port_held_by_another_process(world, game_host, foreign_game):
    old = foreign_game(game_host, "1.0.0")

    job, events = run(world, "game-update", "1.4.2")

    held = f"port {game_host.port} is held by another process (pid {old.pid}, version 1.0.0)"
    assert (job.status, failure(job)) == ("failed", ("failed", "start"))
    assert held in lines(events, "stderr", "start")
    assert not any("game server answering" in line for line in lines(events, "stdout"))
    # The rollback starts the previous build: it cannot listen either, and says why.
    assert f"rollback failed: {held}" in lines(events, "stderr", "rollback")
    assert game_host.answering() == gameserver.Greeting("1.0.0", old.pid)  # left alone
    assert game_host.started_pid() is None
    assert old.poll() is None


def test_start_shows_the_log_of_a_game_server_that_could_not_listen(world, game_host):
    # Not a game server: it never greets, so only the launched server's death tells
    # (and the drain, which cannot count its players, goes ahead after 1 s).
    with socket.create_server((game_host.address, game_host.port)):
        job, events = run(world, "game-update", "1.4.3", drain_timeout="1")

    stderr = lines(events, "stderr", "start")
    assert (job.status, failure(job)) == ("failed", ("failed", "start"))
    died = next(line for line in stderr if " exited before it answered on " in line)
    assert died.startswith("game server pid ")
    assert died.endswith(f"{game_host.address}:{game_host.port}; end of logs/game.log:")
    assert any(f"cannot listen on {game_host.address}:{game_host.port}: Address already in use"
               in line for line in stderr), stderr
    assert game_host.started_pid() is None


def test_a_clean_update_says_nothing_on_stderr_and_records_the_pid_it_started(
        world, game_host):
    (game_host.root / "releases" / "1.4.4").mkdir()  # a build installed before

    job, events = run(world, "game-update", "1.4.4")

    assert job.status == "succeeded", lines(events, "stderr")
    assert lines(events, "stderr") == []
    assert "release 1.4.4 is already on this host; it will be reused" in \
        lines(events, "stdout", "preflight")
    answering = game_host.answering()
    pid_file = int((game_host.root / "run" / "game.pid").read_text())
    assert answering == gameserver.Greeting("1.4.4", game_host.started_pid())
    assert answering.pid == pid_file
    started = lines(events, "stdout", "start")
    assert started[-1].startswith(f"game server answering on {game_host.address}:"
                                  f"{game_host.port} with version 1.4.4 after ")
    assert started[-1].endswith(f" s (pid {answering.pid})")
    assert lines(events, "stdout", "health check")[-1] == "1.4.4"


def test_health_check_fails_when_another_process_answers_with_the_right_version(
        world, game_host, foreign_game):
    job, _ = run(world, "game-update", "1.4.5")
    assert job.status == "succeeded"
    ours = game_host.started_pid()
    healthy, _ = run(world, "game-health", "1.4.5")
    assert healthy.status == "succeeded"

    # The server the start launched goes; another one, of the same build, takes the port.
    stop_host_game(game_host)
    other = foreign_game(game_host, "1.4.5")
    job, events = run(world, "game-health", "1.4.5")

    assert (job.status, failure(job)) == ("failed", ("failed", "health check"))
    assert lines(events, "stderr") == [
        f"health check failed: port {game_host.port} is held by another process "
        f"(pid {other.pid}, version 1.4.5), not by the game server started as pid {ours}"]


# -- the greeting and probe --pid ----------------------------------------------------------


def test_the_greeting_carries_the_pid_and_an_older_one_still_reads():
    assert gameserver.parse_greeting("patchbay-demo-game 1.4.2 pid=4242") == \
        gameserver.Greeting("1.4.2", 4242)
    assert gameserver.parse_greeting("patchbay-demo-game 1.4.2") == \
        gameserver.Greeting("1.4.2", None)
    for bad in ("", "patchbay-demo-game", "SSH-2.0-OpenSSH_9.2",
                "patchbay-demo-game 1.4.2 pid=12x"):
        with pytest.raises(gameserver.ProbeError, match="unexpected answer from here"):
            gameserver.parse_greeting(bad, "here")


def greet_forever(listener: socket.socket, greeting: bytes) -> None:
    with listener:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by the test
            with conn:
                conn.sendall(greeting)


def probe_cli(port: int, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GAME), "probe", "--host", "127.0.0.1",
                           "--port", str(port), "--timeout", "0", *options],
                          capture_output=True, text=True, timeout=30)


def test_probe_pid_asks_proc_for_an_older_servers_pid():
    old = socket.create_server(("127.0.0.1", 0))
    port = old.getsockname()[1]
    threading.Thread(target=greet_forever, args=(old, b"patchbay-demo-game 1.0.0\n"),
                     daemon=True).start()
    try:
        with_pid, plain = probe_cli(port, "--pid"), probe_cli(port)
    finally:
        old.close()
    nobody = probe_cli(free_port(), "--pid")

    assert (with_pid.returncode, with_pid.stdout) == (0, f"1.0.0 {os.getpid()}\n")
    assert (plain.returncode, plain.stdout) == (0, "1.0.0\n")
    assert (nobody.returncode, nobody.stdout) == (1, "")
    assert nobody.stderr.startswith("gameserver probe: no game server answering on ")


def test_the_docs_example_start_and_health_steps_load_as_a_runbook(tmp_path):
    from tasks.planning.runbook_files import load_runbooks

    doc = (PROJECT / "docs" / "runbooks.md").read_text()
    section = doc[doc.index("## Starting a service: start means started"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", 10)]
    steps = "\n".join(line for line in example.splitlines()
                      if not line.strip().startswith("...then"))  # the elided part
    (tmp_path / "doc.yml").write_text(f"name: doc-start\ndescription: x\nsteps:\n{steps}\n")

    book = load_runbooks(tmp_path)["doc-start"]
    assert [step.name for step in book.spec.steps] == ["start", "health check"]
    assert "port $port is held by another process" in book.spec.steps[0].run
