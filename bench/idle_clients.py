"""Idle watchers in a process of their own (so their threads do not steal the measuring
process's time): ``python -m bench.idle_clients URL COOKIE_JSON COUNT CSRF_TOKEN``.

Connects COUNT Socket.IO clients with the given session cookies, prints ``ready N``,
then stays until its standard input closes, prints ``connected N`` (how many are
still connected) and disconnects them all.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import requests
import socketio


def main() -> None:
    url, cookies, count = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    csrf_token = sys.argv[4]  # the session's, as the console's pages send it
    http = requests.Session()
    http.cookies.update(cookies)
    clients: list[socketio.Client] = []

    def connect(_: int) -> socketio.Client:
        client = socketio.Client(http_session=http, reconnection=False,
                                 websocket_extra_options={"skip_utf8_validation": True})
        client.connect(url, transports=["websocket"], wait_timeout=60,
                       auth={"csrf_token": csrf_token})
        return client

    with ThreadPoolExecutor(32) as pool:
        clients.extend(pool.map(connect, range(count)))
    print(f"ready {sum(c.connected for c in clients)}", flush=True)
    sys.stdin.read()
    print(f"connected {sum(c.connected for c in clients)}", flush=True)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda c: c.disconnect(), clients))


if __name__ == "__main__":
    main()
