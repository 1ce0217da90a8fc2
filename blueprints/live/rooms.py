"""The Socket.IO rooms, named in one place (docs/live-api.md says who gets what).

- ``user:<id>``: every socket of a user; gets ``job:progress`` for the user's jobs.
- ``job:<id>``: the sockets subscribed to a job; gets its ``job:events``.
- ``token:<id>``: the sockets that logged in with an API token (revoking it drops them).
- ``login:<id>``: the sockets of one browser login (its logout drops them).
- ``fleet``: the servers page's sockets; gets ``fleet:servers``.

``jobs:waiting`` goes to every socket (no room): every page's header shows it.
"""

FLEET_ROOM = "fleet"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def job_room(job_id: int) -> str:
    return f"job:{job_id}"


def token_room(token_id: int) -> str:
    return f"token:{token_id}"


def login_room(session_id: int | None) -> str:
    return f"login:{session_id}"
