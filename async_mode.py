"""Monkey-patching for the chosen async mode, called first thing by entry points only.

``PATCHBAY_ASYNC_MODE`` picks ``eventlet`` (default), ``gevent`` or ``threading``.
Modules that tests import never patch; only ``wsgi.py`` and ``python app.py`` call this.
"""

from __future__ import annotations

import os
import warnings

# Eventlet warns on import that it is in maintenance mode; the README says why we stay.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")


def monkey_patch() -> str:
    """Patch the standard library for the configured mode; returns the mode."""
    mode = os.environ.get("PATCHBAY_ASYNC_MODE", "eventlet")
    if mode == "eventlet":
        import eventlet

        # psycopg waits for PostgreSQL in C unless it sees gevent's patches: under
        # eventlet that wait would freeze every greenlet. Its select() wait is green.
        os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

        eventlet.monkey_patch()
        _psycopg_connects_reclaim_their_fds()
    elif mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
    elif mode != "threading":
        raise SystemExit(f"PATCHBAY_ASYNC_MODE must be eventlet, gevent or threading, not {mode!r}")
    return mode


def _psycopg_connects_reclaim_their_fds() -> None:
    """Under eventlet, drop stale waits on a file descriptor libpq has just opened.

    eventlet forgets a greenlet's wait on a socket only when eventlet itself opens that
    descriptor number again. A socket closed while another greenlet still waits on it
    (paramiko closes its transport's socket while the transport's reader waits up to
    0.1 s in recv) leaves that wait behind, and when libpq, in C, opens a PostgreSQL
    connection on the freed number within that time, psycopg's green wait on it failed
    with "Second simultaneous read on fileno N". Each descriptor a connection attempt
    waits on is marked as reopened first, as eventlet does for its own sockets: the old
    wait is woken with "closed" and the connection's wait goes ahead."""
    try:
        from psycopg import waiting
    except ImportError:
        return
    from eventlet.hubs import get_hub

    wait_conn = waiting.wait_conn

    def marking(gen):  # type: ignore[no-untyped-def] - psycopg's PQGenConn
        try:
            item = next(gen)
            while True:
                get_hub().mark_as_reopened(item[0])
                item = gen.send((yield item))
        except StopIteration as stop:
            return stop.value

    def wait_conn_reclaiming(gen, *args, **kwargs):  # type: ignore[no-untyped-def]
        return wait_conn(marking(gen), *args, **kwargs)

    waiting.wait_conn = wait_conn_reclaiming
