"""The demo fleet of ``make run`` (asyncssh, dash as /bin/sh) works with the engine:
jobs run, failures roll back, cancel really stops remote commands there too, and the
demo deploy streams its download and waits for the game server like a real one; its game
servers count players, log announcements, and a deploy drains them first."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from demo import gameserver, players
from tests.conftest import PROJECT, TEST_RUNBOOKS
from tests.support.engine_world import build_world
from tests.support.remote import remote_commands, unique_seconds
from tests.support.sshd_fleet import free_port
from tests.support.waiting import wait_until

NAP = unique_seconds(10)  # found on the servers by its command line


PROGRESS = re.compile(r"downloading build (?P<version>\S+): (?P<percent>\d+)% "
                      r"\((?P<done>[\d.]+) MiB of (?P<total>[\d.]+) MiB, "
                      r"(?P<rate>[\d.]+) MiB/s\)")


def import_demo_inventory(app, demo_fleet) -> None:
    from extensions import db
    from tasks.planning.inventory import apply_inventory, parse_inventory

    inventory = Path(demo_fleet["inventory"])
    with app.app_context():
        apply_inventory(db.session, parse_inventory(inventory.read_text(), str(inventory)))
        db.session.commit()


@pytest.fixture
def demo_world(app, demo_fleet):
    import_demo_inventory(app, demo_fleet)
    return build_world(app, TEST_RUNBOOKS)


@pytest.fixture
def game_world(app, demo_fleet):
    """An engine with the shipped runbooks (game-update) over the demo fleet."""
    import_demo_inventory(app, demo_fleet)
    return build_world(app, PROJECT / "runbooks")


def output_lines(events: list[dict], host: str, step: str) -> list[str]:
    return [line for e in events if e["type"] == "output" and e["host"] == host
            and e["data"]["step"] == step for line in e["data"]["lines"]]


def processes_on(demo_fleet, host_name: str) -> list[str]:
    host = next(h for h in demo_fleet["hosts"] if h["name"] == host_name)
    return remote_commands(host["address"], host["port"], "demo", demo_fleet["client_key"],
                           demo_fleet["known_hosts"])


@pytest.mark.asyncmode
def test_cancel_stops_remote_commands_on_the_demo_fleet(demo_world, demo_fleet):
    job_id = demo_world.engine.start(
        demo_world.engine.plan("sleepy", {"seconds": NAP}, ["gs-02", "gs-03"]), None)
    demo_world.wait_for(job_id, lambda ev: sum(
        1 for e in ev if e["type"] == "output" and "napping" in e["data"]["lines"]) == 2)

    demo_world.engine.cancel(job_id)
    job = demo_world.wait_finished(job_id, timeout=30)

    assert job.status == "cancelled"
    assert {h.status for h in job.hosts} == {"cancelled"}
    assert f"sleep {NAP}" not in processes_on(demo_fleet, "gs-02")


@pytest.mark.asyncmode
def test_failed_deploy_rolls_back_only_that_server(game_world, demo_fleet):
    world = game_world
    marker = Path(demo_fleet["state_dir"]) / "hosts" / "gs-05" / "FAIL_DEPLOY"
    marker.touch()
    try:
        job = world.wait_finished(world.engine.start(world.engine.plan(
            "game-update", {"version": "2.7.1", "fast": "true"}, ["gs-04", "gs-05"]), None))
    finally:
        marker.unlink()

    by_name = {h.name: h for h in job.hosts}
    assert (by_name["gs-04"].status, by_name["gs-05"].status) == ("succeeded", "failed")
    assert (by_name["gs-05"].failed_step, by_name["gs-05"].exit_code) == ("deploy", 3)
    events = world.events(job.id)
    rollback = output_lines(events, "gs-05", "rollback")
    assert rollback[-2].startswith("rolled back: ")
    restored = rollback[-1]  # the rollback reports the version it went back to
    assert restored != "2.7.1" and restored.count(".") == 2
    assert [e["host"] for e in events if e["type"] == "step_started"
            and e["data"]["phase"] == "on_failure"] == ["gs-05"]
    finished = {e["host"]: e["data"] for e in events if e["type"] == "host_finished"}
    assert finished["gs-04"]["facts"] == {"version": "2.7.1"}
    assert finished["gs-05"]["facts"] == {"version": restored}
    assert finished["gs-05"]["on_failure"] == "succeeded"
    assert finished["gs-05"]["reason"].endswith(f"rolled back to {restored}")


@pytest.mark.asyncmode
def test_a_demo_deploy_streams_its_download_then_waits_for_the_game_server(game_world):
    world = game_world
    job = world.wait_finished(world.engine.start(
        world.engine.plan("game-update", {"version": "5.0.6"}, ["gs-06"]), None), timeout=180)

    events = world.events(job.id)
    download = output_lines(events, "gs-06", "download")
    progress = [PROGRESS.fullmatch(line) for line in download
                if line.startswith("downloading build")]
    start = output_lines(events, "gs-06", "start")
    start_seq = next(e["seq"] for e in events
                     if e["type"] == "step_started" and e["data"]["step"] == "start")
    last_download_seq = max(e["seq"] for e in events
                            if e["type"] == "output" and e["data"]["step"] == "download")
    assert job.status == "succeeded"
    assert any("throttled to" in line for line in download), download
    assert all(progress), download
    assert [int(m["percent"]) for m in progress] == list(range(10, 101, 10))
    assert {m["version"] for m in progress} == {"5.0.6"}
    assert all(float(m["rate"]) > 0 for m in progress)
    assert progress[-1]["done"] == progress[-1]["total"]
    assert last_download_seq < start_seq
    waiting = next(i for i, line in enumerate(start)
                   if line.startswith("waiting for the game server to answer on "))
    answered = next(i for i, line in enumerate(start)
                    if line.startswith("game server answering on "))
    assert waiting < answered
    assert "with version 5.0.6" in start[answered]
    facts = {e["host"]: e["data"].get("facts") for e in events if e["type"] == "host_finished"}
    assert facts["gs-06"] == {"version": "5.0.6"}


@pytest.mark.asyncmode
def test_a_fast_demo_deploy_copies_the_build_without_a_throttle(game_world):
    world = game_world
    job = world.wait_finished(world.engine.start(world.engine.plan(
        "game-update", {"version": "5.0.7", "fast": "true"}, ["gs-07"]), None))

    events = world.events(job.id)
    download = output_lines(events, "gs-07", "download")
    assert job.status == "succeeded"
    assert any("at full speed (no throttle)" in line for line in download), download
    assert not any("throttled to" in line for line in download)
    assert [int(m["percent"]) for line in download if (m := PROGRESS.fullmatch(line))] \
        == list(range(10, 101, 10))


# --- the game server's players (a real game server process on loopback) ------------------

GAME = PROJECT / "demo" / "gameserver.py"
LOOPBACK = "127.0.0.1"


class GameProcess:
    """A game server started by a test: where it listens, its log, its process."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.where = ("--host", LOOPBACK, "--port", str(port))


@pytest.fixture
def game_server(tmp_path):
    version = tmp_path / "VERSION"
    version.write_text("3.1.4\n")
    port = free_port()
    log = tmp_path / "game.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(GAME), "serve", "--host", LOOPBACK, "--port", str(port),
             "--version-file", str(version), "--pid-file", str(tmp_path / "game.pid")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        gameserver.probe_version(LOOPBACK, port, timeout=15)  # retries until it answers
        yield GameProcess(process, port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def game_cli(*args: str) -> subprocess.CompletedProcess:
    """``python3 bin/gameserver.py ARGS`` as a runbook step runs it."""
    return subprocess.run([sys.executable, str(GAME), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)


def next_line(conn: socket.socket) -> str | None:
    conn.settimeout(10)
    return gameserver.LineReader(conn).readline()


def test_the_game_server_counts_its_players_and_passes_announcements_on(game_server):
    alice, alice_count = gameserver.join(LOOPBACK, game_server.port, "alice")
    bob, bob_count = gameserver.join(LOOPBACK, game_server.port, "bob")
    with alice, bob:
        counted = game_cli("players", *game_server.where)
        announced = game_cli("announce", *game_server.where, "restarting", "soon;  finish up")
        heard = [next_line(alice), next_line(bob)]
        version = gameserver.probe_version(LOOPBACK, game_server.port, timeout=0)
    wait_until(lambda: gameserver.player_count(LOOPBACK, game_server.port) == 0,
               what="both players counted out once their connections closed")

    assert (alice_count, bob_count) == (1, 2)
    assert (counted.returncode, counted.stdout) == (0, "2\n")
    assert (announced.returncode, announced.stdout) == (
        0, "announced to 2 players: restarting soon; finish up\n")
    assert heard == ["announce restarting soon; finish up"] * 2
    assert version == "3.1.4"  # probes still get the banner with players on
    log = game_server.log.read_text().splitlines()
    assert "player alice joined (1 online)" in log
    assert "announcement to 2 players: restarting soon; finish up" in log


def test_the_game_server_refuses_unknown_commands_and_bad_player_names(game_server):
    with pytest.raises(gameserver.ProbeError, match="unknown command 'jump'"):
        gameserver.ask(LOOPBACK, game_server.port, "jump high")
    with pytest.raises(gameserver.ProbeError, match="a player name is 1-32 letters"):
        gameserver.join(LOOPBACK, game_server.port, "no spaces!")

    assert gameserver.player_count(LOOPBACK, game_server.port) == 0


def test_players_prints_0_when_no_game_server_listens_and_fails_on_anything_else():
    nobody = game_cli("players", "--host", LOOPBACK, "--port", str(free_port()))
    with socket.create_server((LOOPBACK, 0)) as impostor:
        threading.Thread(target=greet_once, args=(impostor, b"SSH-2.0-OpenSSH_9.2\r\n"),
                         daemon=True).start()
        wrong = game_cli("players", "--host", LOOPBACK,
                         "--port", str(impostor.getsockname()[1]))

    assert (nobody.returncode, nobody.stdout) == (0, "0\n")
    assert (wrong.returncode, wrong.stdout) == (1, "")
    assert wrong.stderr.startswith("gameserver players: unexpected answer from 127.0.0.1:")


def greet_once(listener: socket.socket, greeting: bytes) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(greeting)


def test_stopping_the_game_server_disconnects_its_players(game_server):
    player, _ = gameserver.join(LOOPBACK, game_server.port, "carol")
    with player:
        game_server.process.send_signal(signal.SIGTERM)
        game_server.process.wait(timeout=10)
        said = next_line(player)
        after = player.recv(64)

    assert (said, after) == ("bye server stopping", b"")
    log = game_server.log.read_text().splitlines()
    assert log[-2:] == ["disconnecting 1 players", f"stopped (pid {game_server.process.pid})"]


# --- python -m demo.players ----------------------------------------------------------------


def leave_everyone(state_dir: Path) -> None:
    """Disconnect every simulated player a test left behind."""
    for server_dir in (state_dir / "players").glob("*"):
        game = players.find_server(state_dir, server_dir.name)
        if still_on := len(players.connected(game)):
            players.leave(game, still_on)


@pytest.fixture
def player_state(tmp_path, game_server):
    """A state directory like the demo fleet's: gs-01 is the test's game server, nothing
    listens on gs-02's game port."""
    state = tmp_path / "fleet"
    state.mkdir()
    (state / "inventory.yml").write_text(yaml.safe_dump({"servers": [
        {"name": "gs-01", "host": LOOPBACK, "vars": {"game_port": game_server.port}},
        {"name": "gs-02", "host": LOOPBACK, "vars": {"game_port": free_port()}},
    ]}))
    yield state
    leave_everyone(state)


def test_simulated_players_stay_connected_until_they_leave(player_state, game_server, capsys):
    def count() -> int:
        return gameserver.player_count(LOOPBACK, game_server.port)

    joined = subprocess.run(
        [sys.executable, "-m", "demo.players", "--state-dir", str(player_state),
         "gs-01", "join", "3"], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    after_join = count()  # the command has exited; its players have not
    assert players.main(["--state-dir", str(player_state), "gs-01", "leave", "2"]) == 0
    left = capsys.readouterr().out
    after_leave = count()

    assert joined.returncode == 0, joined.stderr
    assert joined.stdout == ("gs-01: player-1, player-2, player-3 joined; the game server "
                             f"on 127.0.0.1:{game_server.port} counts 3 players\n")
    assert (after_join, after_leave) == (3, 1)
    assert left == ("gs-01: player-2, player-3 left; the game server "
                    f"on 127.0.0.1:{game_server.port} counts 1 player\n")
    assert sorted(p.name for p in (player_state / "players" / "gs-01").glob("*.pid")) \
        == ["player-1.pid"]


def test_demo_players_refuses_what_it_cannot_do_and_changes_nothing(
        player_state, game_server, capsys, tmp_path):
    cli = ["--state-dir", str(player_state)]
    assert players.main([*cli, "gs-01", "join", "1"]) == 0
    capsys.readouterr()

    unknown = players.main([*cli, "gs-09", "join", "1"])
    unknown_err = capsys.readouterr().err
    too_many = players.main([*cli, "gs-01", "leave", "2"])
    too_many_err = capsys.readouterr().err
    no_game = players.main([*cli, "gs-02", "join", "2"])
    no_game_err = capsys.readouterr().err
    no_fleet = players.main(["--state-dir", str(tmp_path / "nowhere"), "gs-01", "join", "1"])
    no_fleet_err = capsys.readouterr().err
    bad_counts = []
    for count in ("0", "101", "three", "-1"):
        with pytest.raises(SystemExit) as stopped:
            players.main([*cli, "gs-01", "join", count])
        bad_counts.append((stopped.value.code, capsys.readouterr().err.splitlines()[-1]))

    assert (unknown, too_many, no_game, no_fleet) == (1, 1, 1, 1)
    assert unknown_err == (f"demo.players: unknown server 'gs-09': the demo fleet in "
                           f"{player_state} has gs-01, gs-02\n")
    assert too_many_err == ("demo.players: gs-01 has 1 simulated players connected; "
                            "cannot disconnect 2\n")
    assert no_game_err.startswith("demo.players: player-1 could not join gs-02: "
                                  "no game server is listening on 127.0.0.1:")
    assert no_fleet_err.startswith(f"demo.players: no demo fleet in {tmp_path / 'nowhere'} "
                                   "(inventory.yml is missing)")
    assert [code for code, _ in bad_counts] == [2, 2, 2, 2]
    assert bad_counts[0][1].endswith("argument N: N must be a whole number from 1 to 100, "
                                     "not '0'")
    assert gameserver.player_count(LOOPBACK, game_server.port) == 1
    assert list((player_state / "players" / "gs-02").glob("*.pid")) == []


# --- a deploy drains its players first (the demo fleet, game-update) ----------------------

RESTARTING = "server restarting for update to {}; please finish your match"
STEPS_TO_DRAIN = ["preflight", "download", "announce", "drain"]


@pytest.fixture
def fleet_players(demo_fleet):
    """``python -m demo.players SERVER ACTION N`` on the demo fleet (in-process); every
    player still connected at the end leaves."""
    state = Path(demo_fleet["state_dir"])

    def run(server: str, action: str, count: int) -> players.GameAddress:
        assert players.main(["--state-dir", str(state), server, action, str(count)]) == 0
        return players.find_server(state, server)

    yield run
    leave_everyone(state)


def steps_started(events: list[dict], host: str) -> list[str]:
    return [e["data"]["step"] for e in events
            if e["type"] == "step_started" and e["host"] == host]


def step_finished(events: list[dict], host: str, step: str) -> dict:
    return next(e["data"] for e in events if e["type"] == "step_finished"
                and e["host"] == host and e["data"]["step"] == step)


def probes(events: list[dict], host: str) -> list[dict]:
    return [e["data"] for e in events if e["type"] == "wait_probe" and e["host"] == host]


@pytest.mark.asyncmode
def test_an_update_waits_for_the_last_player_to_leave(game_world, fleet_players):
    world = game_world
    game = fleet_players("gs-08", "join", 1)
    job_id = world.engine.start(world.engine.plan("game-update", {
        "version": "6.1.0", "fast": "true", "drain_timeout": 600}, ["gs-08"]), None)
    held = world.wait_for(job_id, lambda events: any(
        not probe["matched"] for probe in probes(events, "gs-08")), timeout=60)
    fleet_players("gs-08", "leave", 1)
    job = world.wait_finished(job_id, timeout=90)

    events = world.events(job_id)
    seen = probes(events, "gs-08")
    assert steps_started(held, "gs-08") == STEPS_TO_DRAIN  # held at the drain
    assert probes(held, "gs-08")[0]["output"] == ["1"]
    assert [p["output"] for p in seen[:-1]] == [["1"]] * (len(seen) - 1)
    assert (seen[-1]["output"], seen[-1]["matched"]) == (["0"], True)
    assert job.status == "succeeded"
    assert steps_started(events, "gs-08") == [*STEPS_TO_DRAIN, "stop", "deploy", "start",
                                              "health check"]
    assert step_finished(events, "gs-08", "drain")["status"] == "ok"
    assert output_lines(events, "gs-08", "announce") == [
        f"announced to 1 player: {RESTARTING.format('6.1.0')}"]
    heard = (game.players_dir / "players.log").read_text()
    assert f"player-1: heard: {RESTARTING.format('6.1.0')}\n" in heard
    assert {e["host"]: e["data"]["facts"] for e in events
            if e["type"] == "host_finished"} == {"gs-08": {"version": "6.1.0"}}


@pytest.mark.asyncmode
def test_an_update_goes_ahead_at_the_drain_deadline_and_its_stop_disconnects_players(
        game_world, fleet_players):
    world = game_world
    game = fleet_players("gs-03", "join", 1)
    job = world.wait_finished(world.engine.start(world.engine.plan("game-update", {
        "version": "6.2.0", "fast": "true", "drain_timeout": 3}, ["gs-03"]), None),
        timeout=90)
    wait_until(lambda: not players.connected(game), what="the player gone with the old server")

    events = world.events(job.id)
    drained = step_finished(events, "gs-03", "drain")
    seen = probes(events, "gs-03")
    assert job.status == "succeeded"
    assert (drained["status"], drained["reason"]) == (
        "ok", "no probe matched ^0$ within 3 s; going on (on_timeout: proceed)")
    assert {(tuple(p["output"]), p["matched"]) for p in seen} == {(("1",), False)}
    assert steps_started(events, "gs-03")[4:] == ["stop", "deploy", "start", "health check"]
    assert "player-1: disconnected by the server (bye server stopping)\n" in \
        (game.players_dir / "players.log").read_text()
    assert gameserver.player_count(game.host, game.port) == 0
    assert gameserver.probe_version(game.host, game.port, timeout=0) == "6.2.0"
