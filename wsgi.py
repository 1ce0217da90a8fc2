"""WSGI entry point: ``gunicorn -k eventlet -w 1 wsgi:app`` (one worker: Socket.IO
long-polling needs sticky sessions, and the worker runs the jobs it starts)."""

import async_mode

async_mode.monkey_patch()

from app import create_app, start_node  # noqa: E402 - must come after monkey-patching

app = create_app()
start_node(app)
