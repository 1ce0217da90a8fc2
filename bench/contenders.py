"""The tools Patchbay is measured against, each run in a process of its own.

``python -m bench.contenders TOOL FLEET_JSON N`` runs the fan-out scenario's three
commands on the first ``N`` hosts of the fleet and prints one JSON line: wall seconds
and CPU seconds (user + system, all threads) of this process for the fan-out alone
(imports and interpreter start-up excluded, as Patchbay's server is already running).

- ``floor``: bare Fabric in an eventlet green pool, one connection per host reused for
  the three commands, host keys checked against the fleet's known_hosts (parsed once).
  Everything Patchbay adds is overhead over this.
- ``floor-wrapped``: the floor running the commands as Patchbay runs steps: one agent
  shell per host on one channel (``tasks.transport.remote_scripts.AGENT_SCRIPT``: each step
  detached, its output through two long-lived ``tee``s into files of the host's run
  directory, ended by a marker line with its exit status), plus the per-host clean-up a
  console makes between two retention sweeps (the agent's ``remove`` request). It
  separates the cost of what makes steps survive (processes on the remote, i.e. on this
  machine) from the engine's.
- ``pssh``: parallel-ssh's ``ParallelSSHClient`` (libssh2, gevent), connections reused.
- ``threading``: Fabric's ``ThreadingGroup`` (one OS thread per host per command).

Each tool runs in its own process because eventlet and gevent patch the standard
library differently and must not meet.
"""

from __future__ import annotations

import json
import sys

TOOLS = ("floor", "floor-wrapped", "pssh", "threading")


def _load(fleet_json: str, count: int) -> tuple[list[dict], list[str], int]:
    with open(fleet_json, encoding="utf-8") as handle:
        fleet = json.load(handle)
    return fleet["hosts"][:count], fleet["commands"], fleet["connect_timeout"]


def run_floor(fleet_json: str, count: int, wrapped: bool = False) -> dict:
    import eventlet

    eventlet.monkey_patch()
    import resource
    import secrets
    import time

    import paramiko
    from fabric import Config, Connection

    from tasks.transport.remote_scripts import (
        AGENT_SCRIPT,
        REMOVE_REQUEST,
        remote_script,
        step_request,
    )

    hosts, commands, timeout = _load(fleet_json, count)
    root = "~/.patchbay/bench-runs"

    def wrapped_steps(connection: Connection, host: dict) -> int:
        """The commands as an agent's steps (no Patchbay engine: bytes are only
        searched for each step's end markers)."""
        host_dir = f"{root}/floor-{wall0:.0f}/{host['name']}"
        channel = connection.transport.open_session(window_size=32_768,
                                                    max_packet_size=8_192)
        channel.exec_command(remote_script(AGENT_SCRIPT, host_dir, secrets.token_hex(4)))
        streams = [b"", b""]
        failed = 0
        for index, command in enumerate(commands):
            token = secrets.token_hex(8)
            channel.sendall(step_request(str(index), token, (0, 0), command))
            marker = b"\n@@patchbay-end " + token.encode() + b" "
            for stream, recv in enumerate((channel.recv, channel.recv_stderr)):
                while marker not in streams[stream] or not streams[stream].endswith(b"\n"):
                    data = recv(65_536)
                    if not data:
                        raise RuntimeError(f"{host['name']}: the agent ended")
                    streams[stream] += data
                status = streams[stream].partition(marker)[2].split(b"\n", 1)[0]
                streams[stream] = b""
            failed += status != b"0"
        channel.sendall(REMOVE_REQUEST)
        channel.shutdown_write()
        failed += channel.recv_exit_status() != 0
        channel.close()
        return failed

    known = _known_hosts(hosts)
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    config = Config(overrides={"load_ssh_configs": False})

    def one(host: dict) -> int:
        connection = Connection(
            host["address"], port=host["port"], user=host["user"], config=config,
            connect_timeout=timeout,
            connect_kwargs={"key_filename": host["key"], "look_for_keys": False,
                            "allow_agent": False, "banner_timeout": timeout,
                            "auth_timeout": timeout})
        name = f"[{host['address']}]:{host['port']}"
        for keytype, key in (known.lookup(name) or {}).items():
            connection.client.get_host_keys().add(name, keytype, key)
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        failed = 0
        try:
            if wrapped:
                connection.open()
                return wrapped_steps(connection, host)
            for command in commands:
                result = connection.run(command, hide=True, in_stream=False, warn=True,
                                        timeout=600)
                failed += result.exited != 0
        finally:
            connection.close()
        return failed

    pool = eventlet.GreenPool(len(hosts))
    failures = sum(pool.imap(one, hosts))
    return _measured(usage0, wall0, len(hosts), failures)


def _known_hosts(hosts: list[dict]) -> object:
    """The fleet's known_hosts entries of these hosts only, parsed before the clock
    starts. The fleet's file lists every host of the run (5,000 with the scale
    scenario): paramiko compares a name with every entry, so the whole file would charge
    the floor for servers it never meets (37.6 ms per host at 50 hosts instead of 18)."""
    import paramiko

    names = {f"[{h['address']}]:{h['port']}" for h in hosts}
    with open(hosts[0]["known_hosts"], encoding="ascii") as handle:
        lines = [line for line in handle if line.split(" ", 1)[0] in names]
    known = paramiko.HostKeys()
    for line in lines:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        if entry is not None:
            for name in entry.hostnames:
                known.add(name, entry.key.get_name(), entry.key)
    return known


def run_pssh(fleet_json: str, count: int) -> dict:
    import resource
    import time

    from gevent import monkey

    monkey.patch_all()
    from pssh.clients import ParallelSSHClient

    hosts, commands, timeout = _load(fleet_json, count)
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    client = ParallelSSHClient(
        [h["address"] for h in hosts], user=hosts[0]["user"], port=hosts[0]["port"],
        pkey=hosts[0]["key"], pool_size=len(hosts), num_retries=1, timeout=timeout)
    failures = 0
    for command in commands:
        output = client.run_command(command, stop_on_errors=False)
        client.join(output)
        for host_output in output:
            for _line in host_output.stdout or ():
                pass
            failures += host_output.exception is not None or host_output.exit_code != 0
    for host_client in list(client._host_clients.values()):
        host_client.disconnect()
    return _measured(usage0, wall0, len(hosts), failures)


def run_threading(fleet_json: str, count: int) -> dict:
    import resource
    import time

    from fabric import Config, ThreadingGroup

    hosts, commands, timeout = _load(fleet_json, count)
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    group = ThreadingGroup(
        *[h["address"] for h in hosts], port=hosts[0]["port"], user=hosts[0]["user"],
        config=Config(overrides={"load_ssh_configs": False}), connect_timeout=timeout,
        connect_kwargs={"key_filename": hosts[0]["key"], "look_for_keys": False,
                        "allow_agent": False, "banner_timeout": timeout,
                        "auth_timeout": timeout})
    failures = 0
    try:
        for command in commands:
            results = group.run(command, hide=True, in_stream=False, warn=True, timeout=600)
            failures += sum(1 for r in results.values() if getattr(r, "exited", 1) != 0)
    finally:
        group.close()
    return _measured(usage0, wall0, len(hosts), failures)


def _measured(usage0, wall0: float, hosts: int, failures: int) -> dict:
    import resource
    import time

    wall = time.perf_counter() - wall0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    return {"hosts": hosts, "wall": round(wall, 3), "cpu": round(cpu, 3),
            "failures": int(failures), "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    tool, fleet_json, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    runner = {"floor": run_floor, "pssh": run_pssh, "threading": run_threading,
              "floor-wrapped": lambda path, n: run_floor(path, n, wrapped=True)}[tool]
    print(json.dumps(runner(fleet_json, count)), flush=True)


if __name__ == "__main__":
    main()
