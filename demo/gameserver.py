"""Tiny stand-in game server for the Patchbay demo fleet (stdlib only).

``serve`` answers every TCP connection with one line,
``patchbay-demo-game <version>``, and closes it. The version is read once at
startup, so a server keeps reporting the build it was started from even after
``current`` is pointed elsewhere, just like a real binary would. With
``--load-seconds`` it first spends that long "loading" (printing what it loads)
before it opens its port, as a real game server loads its map and assets.

``probe`` connects (retrying until its deadline, since the server may still be
starting), prints the reported version and exits 0, or explains on stderr and
exits 1.

The demo fleet copies this file to every host as ``bin/gameserver.py``, so it
must keep running as a standalone script.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

BANNER = "patchbay-demo-game"
RETRY_INTERVAL = 0.1


class ProbeError(Exception):
    """No game server answered, or it answered something unexpected."""


def serve(host: str, port: int, version_file: Path, pid_file: Path,
          load_seconds: float = 0.0) -> None:
    """Load for ``load_seconds``, then answer connections on host:port with the
    version until SIGTERM/SIGINT."""
    version = version_file.read_text().strip()
    answer = f"{BANNER} {version}\n".encode()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # Written before loading, so a stop script finds (and can stop) a server that
    # is still loading; removed only after the port is closed.
    _write_pid_file(pid_file)
    listener = None
    try:
        _load(version, load_seconds)
        listener = socket.create_server((host, port))
        print(f"serving version {version} on {host}:{port} (pid {os.getpid()})", flush=True)
        while True:
            conn, _ = listener.accept()
            # A prober that hangs up early is not an error worth dying for.
            with conn, contextlib.suppress(OSError):
                conn.sendall(answer)
    except KeyboardInterrupt:
        pass
    finally:
        # Close before dropping the pid file: "pid file gone" then means the
        # port is free again, which is what a stop script waits for.
        if listener is not None:
            listener.close()
        _remove_own_pid_file(pid_file)
        print(f"stopped (pid {os.getpid()})", flush=True)


def _load(version: str, seconds: float) -> None:
    if seconds <= 0:
        return
    phases = [f"loading build {version} assets", "loading map", "warming up the simulation"]
    for number, phase in enumerate(phases, 1):
        print(f"{phase} ({number}/{len(phases)})", flush=True)
        time.sleep(seconds / len(phases))


def probe_version(host: str, port: int, timeout: float = 5.0) -> str:
    """Return the version the game server on host:port reports.

    Retries refused/failed connections until ``timeout`` seconds have passed;
    ``timeout=0`` makes exactly one attempt.
    """
    deadline = time.monotonic() + timeout
    while True:
        attempt_timeout = max(0.5, min(2.0, deadline - time.monotonic()))
        try:
            with socket.create_connection((host, port), timeout=attempt_timeout) as conn:
                data = _read_all(conn)
            break
        except OSError as exc:
            if time.monotonic() + RETRY_INTERVAL >= deadline:
                raise ProbeError(f"no game server answering on {host}:{port} ({exc})") from exc
            time.sleep(RETRY_INTERVAL)
    banner, _, version = data.decode(errors="replace").strip().partition(" ")
    if banner != BANNER or not version:
        raise ProbeError(f"unexpected answer from {host}:{port}: {data[:80]!r}")
    return version


def _read_all(conn: socket.socket, limit: int = 1024) -> bytes:
    data = b""
    while len(data) < limit and (chunk := conn.recv(limit - len(data))):
        data += chunk
    return data


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # Raising unwinds through serve()'s finally, which cleans up the pid file.
    raise SystemExit(0)


def _write_pid_file(pid_file: Path) -> None:
    # Atomic, so a concurrent `cat run/game.pid` never sees a partial number.
    tmp = pid_file.with_name(f".{pid_file.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, pid_file)


def _remove_own_pid_file(pid_file: Path) -> None:
    # A newer server may already have claimed the file; leave that one alone.
    try:
        if pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the game server")
    serve_cmd.add_argument("--host", required=True)
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--version-file", type=Path, required=True)
    serve_cmd.add_argument("--pid-file", type=Path, required=True)
    serve_cmd.add_argument("--load-seconds", type=float, default=0.0,
                           help="time spent loading before the port opens")
    probe_cmd = commands.add_parser("probe", help="print the version a game server reports")
    probe_cmd.add_argument("--host", required=True)
    probe_cmd.add_argument("--port", type=int, required=True)
    probe_cmd.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)

    try:
        if args.command == "serve":
            serve(args.host, args.port, args.version_file, args.pid_file,
                  args.load_seconds)
        else:
            print(probe_version(args.host, args.port, args.timeout))
    except (OSError, ProbeError) as exc:
        print(f"gameserver {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
