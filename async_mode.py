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
    elif mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
    elif mode != "threading":
        raise SystemExit(f"PATCHBAY_ASYNC_MODE must be eventlet, gevent or threading, not {mode!r}")
    return mode
