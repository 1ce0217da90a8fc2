"""The console process's garbage collector, tuned once it has started.

A console holds hundreds of thousands of long-lived objects (the app, SQLAlchemy's
mappers and compiled statements, the modules), and CPython's full collections walk them
all: in a 200-server fan-out they took about 100 ms each. Freezing what start-up built
moves it out of the collector's sight (it stays alive anyway). A larger first
generation runs the collector less often on the short-lived objects of each event and
packet; reference counting frees nearly all of those without it.

Measured in `make bench-full` (docs/benchmarks.md): with these thresholds the fan-out
of 1,000 servers took 8.7 ms of console CPU per server (12.9 with CPython's 700/10/10)
and 500 watchers' p95 latency 152 ms (191). The price is memory at scale: paramiko's
transports are freed by the collector (their reference cycles), later than before, so
a 5,000-server fan-out (1,000 at a time) held +356 MB at its peak instead of +129 MB.
"""

from __future__ import annotations

import gc

FIRST_GENERATION = 10_000  # CPython's default is 700 allocations
OLDER_GENERATIONS = (20, 20)  # its default is (10, 10)


def tune_after_start_up() -> None:
    """Collect what start-up left, freeze the rest, and space collections out."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(FIRST_GENERATION, *OLDER_GENERATIONS)
