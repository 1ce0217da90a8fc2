"""The doors: HTTP pages, the JSON API and the Socket.IO handlers. They parse a request,
call a service and shape the answer; no rule of the console lives here.

May import: ``services``, ``tasks`` (for types and read helpers), ``models``,
``config``, ``extensions``; never ``app`` or ``cli``.

- ``pages/``: the HTML pages (one blueprint per feature) and the log download.
- ``api/``: the JSON API, its OpenAPI document and ``/metrics``.
- ``live/``: Socket.IO: handlers, rooms, replay, publishing, the fleet room, limits,
  the session sweeper, the handshake cap, the Redis manager and the packet class.
- ``http/``: helpers every HTTP door shares (headers, input guard, errors, query
  arguments, forms, the client's address behind proxies).
"""
