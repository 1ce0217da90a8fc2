"""Small helpers every private service shares: free ports, readiness, stopping, and
tying a service's life to ours."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


def dies_with_us(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send ``signum`` to the child when we die,
    however we die (SIGKILL included): the child's stop signal, so it shuts down the
    way it would if we stopped it (and stops its own children: postgres its backends,
    nginx and gunicorn their workers).

    Why a parent-death signal and not a watchdog process: every service here runs in
    the foreground as our direct child (postgres itself rather than ``pg_ctl``, nginx
    with ``daemon off``, ``redis-server`` with ``daemonize no``), which is all the
    parent-death signal needs, and the kernel delivers it even when nothing of ours is
    left to run, where a watchdog can be killed along with us (``kill -9 -- -PGID``).
    It fires when the *thread* that started the child ends, so start services from
    the main thread (``stack.cluster`` and the test fixtures do). If we died between
    the fork and the ``prctl``, the child is already orphaned and exits instead of starting.
    None (nothing to do) where there is no ``prctl``: not Linux."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def tie() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            os._exit(126)  # a child we could not tie to us must not run at all
        if os.getppid() != parent:  # we died before the prctl took effect
            os._exit(125)

    return tie
