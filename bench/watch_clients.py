"""Subscribed watchers in a process of their own:
``python -m bench.watch_clients URL COOKIE_JSON CSRF_TOKEN COUNT``.

Connects COUNT measuring clients with the given session, prints ``ready N``, reads a
job id from standard input, subscribes every client to it, waits until each has every
event up to ``job_finished`` (or a deadline), then prints one JSON line: how many
clients got the whole job, and every output line's delay (ms, remote timestamp to
arrival, live events only), then stays until its standard input closes.

Fifty watchers are fifty browsers on fifty machines. Run as threads of one Python
process they decode each message one after the other under one interpreter lock, so
the last of them measured its own queue, not the console: 50 threads of one process
saw p95 284 ms where one watcher saw 134 ms on the same job. The scenario spreads its
watchers over a few such processes instead.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench import patchbay as pb
from bench.scenarios import line_delays

DEADLINE_SECONDS = 600


class _Server:
    """What ``pb.watching_client`` needs of a server: its URL."""

    def __init__(self, url: str) -> None:
        self.url = url


def main() -> None:
    url, cookies, csrf_token, count = (sys.argv[1], json.loads(sys.argv[2]), sys.argv[3],
                                       int(sys.argv[4]))
    http = requests.Session()
    http.cookies.update(cookies)
    http.headers["X-CSRFToken"] = csrf_token
    server = _Server(url)
    watches = [pb.Watch() for _ in range(count)]
    with ThreadPoolExecutor(16) as pool:
        clients = list(pool.map(lambda w: pb.watching_client(server, http, w.take), watches))
    print(f"ready {sum(c.connected for c in clients)}", flush=True)
    job_id = int(sys.stdin.readline())
    with ThreadPoolExecutor(16) as pool:
        acks = list(pool.map(lambda c: c.call("job:subscribe", {"job_id": job_id,
                                                                "after_seq": 0}, timeout=60),
                             clients))
    refused = [ack for ack in acks if not ack.get("ok")]
    deadline = time.monotonic() + DEADLINE_SECONDS
    for watch in watches:
        watch.done.wait(max(0.0, deadline - time.monotonic()))
    delays = [round(d, 2) for watch in watches for d in line_delays(watch)]
    print(json.dumps({"complete": sum(w.complete() for w in watches), "refused": len(refused),
                      "delays": delays}), flush=True)
    sys.stdin.read()  # stay (so the harness can read this process's CPU) until told
    for client in clients:
        client.disconnect()


if __name__ == "__main__":
    main()
