"""The Socket.IO door: event handlers, rooms (``rooms.py``), replay and job access,
publishing the event log's batches, the servers page's room, per-user and handshake
limits, the sweeper of ended sessions, and the Redis client manager and packet class
the server is built with. docs/live-api.md is its contract."""
