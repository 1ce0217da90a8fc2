"""The demo owns its processes: two demos with their own addresses and ports run side by
side, a demo refuses addresses another process holds (naming it) and starts nothing, and
stopping ``make run`` (scripts/run-demo.sh) stops its game servers and players, so a
restart finds none left over. Real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from demo import gameserver, ports
from tests.conftest import PROJECT
from tests.support.sshd_fleet import free_port
from tests.support.waiting import wait_until

RUN_DEMO = PROJECT / "scripts" / "run-demo.sh"
GAME = PROJECT / "demo" / "gameserver.py"


def alive(pid: int) -> bool:
    """The process runs (a zombie, already exited, does not)."""
    return bool(ports.arguments(pid))


def game_pids(state: Path) -> dict[str, int]:
    """Host name -> pid from each demo host's game pid file."""
    return {pid_file.parent.parent.name: int(pid_file.read_text())
            for pid_file in sorted((state / "hosts").glob("*/run/game.pid"))}


def ssh_greets(address: str, port: int) -> bool:
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.settimeout(5)
        return conn.recv(64).startswith(b"SSH-2.0-")


class FleetProcess:
    """``python -m demo.sshfleet`` with addresses and ports of its own."""

    def __init__(self, root: Path, first_address: str, count: int = 3) -> None:
        self.state = root / "fleet"
        self.ready = root / "ready.json"
        self.ssh_port, self.game_port = free_port(), free_port()
        self.log = root / "fleet.log"
        root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "demo.sshfleet", "--state-dir", str(self.state),
                 "--count", str(count), "--first-address", first_address,
                 "--ssh-port", str(self.ssh_port), "--game-port", str(self.game_port),
                 "--ready-file", str(self.ready)],
                cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> dict:
        wait_until(lambda: self.ready.exists() or self.process.poll() is not None,
                   timeout=60, what="the demo fleet's ready file")
        assert self.ready.exists(), self.log.read_text()
        return json.loads(self.ready.read_text())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def test_two_demo_fleets_run_side_by_side_each_with_its_own_game_servers(tmp_path):
    fleets = [FleetProcess(tmp_path / "a", "127.0.0.161"),
              FleetProcess(tmp_path / "b", "127.0.0.171")]
    try:
        readies = [fleet.wait_ready() for fleet in fleets]
        answers = {}
        for fleet, ready in zip(fleets, readies, strict=True):
            pids = game_pids(fleet.state)
            for host in ready["hosts"]:
                address = host["address"]
                answers[address] = (
                    ssh_greets(address, fleet.ssh_port),
                    gameserver.probe_version(address, fleet.game_port, timeout=0),
                    ports.holder(address, fleet.game_port).pid == pids[host["name"]],
                    str(fleet.state) in ports.arguments(pids[host["name"]])[1])
        all_pids = [pid for fleet in fleets for pid in game_pids(fleet.state).values()]
    finally:
        codes = [fleet.stop() for fleet in fleets]

    assert sorted(answers) == ["127.0.0.161", "127.0.0.162", "127.0.0.163",
                               "127.0.0.171", "127.0.0.172", "127.0.0.173"]
    assert set(answers.values()) == {(True, "1.0.0", True, True)}
    assert codes == [0, 0]
    assert len(set(all_pids)) == 6
    assert not [pid for pid in all_pids if alive(pid)]


# --- make run (scripts/run-demo.sh) ---------------------------------------------------------


class Demo:
    """Settings of one ``make run``: its own state dir, ports and addresses."""

    def __init__(self, root: Path, first_address: str) -> None:
        self.root = root
        self.first_address = first_address
        self.ssh_port, self.game_port, self.port = free_port(), free_port(), free_port()
        base = {key: value for key, value in os.environ.items()
                if not key.startswith("PATCHBAY_") and key != "DATABASE_URL"}
        self.env = {**base, "PYTHON": sys.executable, "PATCHBAY_DEMO_DIR": str(root),
                    "PATCHBAY_PORT": str(self.port), "PATCHBAY_ADMIN_PASSWORD": "demo-test-pw",
                    "PATCHBAY_DEMO_SSH_PORT": str(self.ssh_port),
                    "PATCHBAY_DEMO_GAME_PORT": str(self.game_port),
                    "PATCHBAY_DEMO_FIRST_ADDRESS": first_address}

    def address(self, index: int) -> str:
        """The address of host ``index`` (1-based)."""
        return self.first_address.rsplit(".", 1)[0] + \
            f".{int(self.first_address.rsplit('.', 1)[1]) + index - 1}"

    def run(self) -> subprocess.CompletedProcess:
        return subprocess.run([str(RUN_DEMO)], env=self.env, cwd=PROJECT, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)

    def start(self, log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen([str(RUN_DEMO)], env=self.env, cwd=PROJECT,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def stale_game_server(tmp_path):
    """A game server left listening by an earlier demo: a real process, its own session."""
    version = tmp_path / "stale-VERSION"
    version.write_text("0.9.0\n")

    def start(address: str, port: int) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, str(GAME), "serve", "--host", address, "--port", str(port),
             "--version-file", str(version), "--pid-file", str(tmp_path / "stale.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        started.append(process)
        gameserver.probe_version(address, port, timeout=15)  # retries until it answers
        return process

    started: list[subprocess.Popen] = []
    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def test_make_run_refuses_taken_addresses_naming_who_holds_them_and_starts_nothing(
        tmp_path, stale_game_server):
    demo = Demo(tmp_path / "demo", "127.0.0.181")
    stale = stale_game_server(demo.address(3), demo.game_port)
    with socket.create_server((demo.address(5), demo.ssh_port)):  # held by this test
        refused = demo.run()

    assert refused.returncode == 3, refused.stderr
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"make run: {demo.address(3)}:{demo.game_port} is already in use by pid {stale.pid} "
        f"({ports.command_line(stale.pid)}); stop it, or set PATCHBAY_DEMO_GAME_PORT",
        f"make run: {demo.address(5)}:{demo.ssh_port} is already in use by pid "
        f"{os.getpid()} ({ports.command_line(os.getpid())}); "
        "stop it, or set PATCHBAY_DEMO_SSH_PORT",
    ]
    assert ports.command_line(stale.pid).startswith(
        f"{sys.executable} {GAME} serve --host {demo.address(3)} --port {demo.game_port} ")
    assert not demo.root.exists()  # no database, no fleet, no game server pid files
    assert not [f"{demo.address(i)}:{port}" for i in range(1, 9)
                for port in (demo.ssh_port, demo.game_port)
                if i != 3 and ports.in_use(demo.address(i), port)]
    assert gameserver.probe_version(demo.address(3), demo.game_port, timeout=0) == "0.9.0"


def test_make_run_refuses_bad_settings_by_name(tmp_path):
    demo = Demo(tmp_path / "demo", "127.0.0.181")
    demo.env["PATCHBAY_DEMO_GAME_PORT"] = "27O15"
    bad_port = demo.run()
    demo.env["PATCHBAY_DEMO_GAME_PORT"] = str(demo.ssh_port)
    same_port = demo.run()

    assert (bad_port.returncode, bad_port.stderr) == (2, (
        "make run: PATCHBAY_DEMO_GAME_PORT must be a port number from 1 to 65535, "
        "not '27O15'\n"))
    assert (same_port.returncode, same_port.stderr) == (2, (
        f"make run: PATCHBAY_DEMO_SSH_PORT and PATCHBAY_DEMO_GAME_PORT are both "
        f"{demo.ssh_port}; they must differ\n"))
    assert not demo.root.exists()


def start_demo(demo: Demo, log: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    """Start ``make run``'s script; return it and its game servers' pids once the
    console answers."""
    script = demo.start(log)

    def console_up() -> bool:
        if script.poll() is not None:
            pytest.fail(f"make run exited {script.returncode}:\n{log.read_text()}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", demo.port)) == 0

    wait_until(console_up, timeout=90, what="the demo console answering")
    pids = game_pids(demo.root / "fleet")
    assert len(pids) == 8
    return script, pids


def stop_demo(script: subprocess.Popen, ctrl_c: bool = False) -> int:
    """TERM to the script, or Ctrl-C as a terminal sends it: SIGINT to the whole
    foreground process group (the script leads its own: ``start_new_session``)."""
    if script.poll() is None:
        if ctrl_c:
            os.killpg(script.pid, signal.SIGINT)
        else:
            script.send_signal(signal.SIGTERM)
    return script.wait(timeout=90)


def test_term_or_ctrl_c_to_make_run_stops_its_game_servers_and_players_and_none_are_left(
        tmp_path):
    demo = Demo(tmp_path / "demo", "127.0.0.191")
    script, first_games = start_demo(demo, tmp_path / "first.log")
    try:
        joined = subprocess.run(
            [sys.executable, "-m", "demo.players", "gs-02", "join", "2"], env=demo.env,
            cwd=PROJECT, capture_output=True, text=True, timeout=60)
        players = [int(p.read_text()) for p in
                   (demo.root / "fleet" / "players" / "gs-02").glob("player-*.pid")]
        children = [int(pid) for pid in subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(script.pid)], capture_output=True,
            text=True).stdout.split()]
    finally:
        first_code = stop_demo(script)
    left_over = [pid for pid in [*first_games.values(), *players, *children] if alive(pid)]

    script, second_games = start_demo(demo, tmp_path / "second.log")
    try:
        answers = {gameserver.probe_version(demo.address(i), demo.game_port, timeout=0)
                   for i in range(1, 9)}
    finally:
        second_code = stop_demo(script, ctrl_c=True)

    assert joined.returncode == 0, joined.stderr
    assert len(players) == 2 and len(children) == 2  # the fleet and the console
    assert first_code == 143  # 128 + SIGTERM
    assert left_over == []
    assert answers == {"1.0.0"}
    assert set(second_games.values()).isdisjoint(first_games.values())
    assert second_code == 130  # 128 + SIGINT, as the script says on Ctrl-C
    assert not [pid for pid in second_games.values() if alive(pid)]
