"""Small helpers every private service shares: free ports, readiness, stopping."""

from __future__ import annotations

import signal
import socket
import subprocess
import time


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def wait_for_port(address: str, port: int, timeout: float = 30,
                  process: subprocess.Popen | None = None) -> None:
    """Return once something accepts TCP connections on ``address:port``.

    Raises ``TimeoutError`` after ``timeout`` seconds, or ``RuntimeError`` at once if
    ``process`` (the one expected to listen) has exited meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the process meant to listen on {address}:{port} "
                                   f"exited with code {process.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {address}:{port}") from None
            time.sleep(0.05)  # polling interval of a deadline loop


def stop_process(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
