"""The console process's garbage collector, tuned once it has started.

A console holds hundreds of thousands of long-lived objects (the app, SQLAlchemy's
mappers and compiled statements, one paramiko transport per connected server), and
CPython's full collections walk them all: in a 200-server fan-out they took about
100 ms each, and the collector about a sixth of the console's CPU, most of it at the
event writer's allocations. Freezing what start-up built moves it out of the
collector's sight (it stays alive anyway), and a larger first generation runs the
collector less often on the short-lived objects of each event; reference counting
frees nearly all of those without it.
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
