"""What the console does for a user, whatever door the request came through (pages,
JSON API, Socket.IO, the ``flask`` CLI): validation, the engine call, the audit entry.
Doors parse and answer; they call these.

May import: ``tasks``, ``models``, ``config``, ``extensions``. Never ``blueprints``:
when a service must reach sockets it goes through :class:`services.console.SocketControl`,
which the live door implements.

- ``console.py``: the typed accessor for the app's long-lived objects.
- ``commands.py`` + ``schemas/``: the job commands behind both doors, and their input.
- ``auth/``: users, login sessions and their slow-down, API tokens, permissions.
- ``audit.py``, ``builds.py``, ``history.py``, ``step_durations.py``, ``fleet.py``,
  ``retention.py``, ``progress.py``, ``metrics.py``, ``limiter_recovery.py``,
  ``database_state.py`` (is the database set up, for the ``flask`` commands): one job each.
- ``webhooks/``: rules, payload formats, store, outbox and the delivery worker.
"""
