"""Stopping a running step: TERM to its process group when its control asks, KILL once
the grace period has passed, and, when even KILL does not end it, no more waiting.

A closed channel does not stop a command run without a pty, so the signals go to the
step's process group over a channel of their own (``send``). The step reader
(:mod:`tasks.transport.step_reader`) calls :meth:`StopSequence.check` once a round;
after the step's output has ended, :meth:`StopSequence.finish` makes sure no process
that ignored TERM outlives the grace period.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks.transport.protocol import StepControl, TransportError

POLL_SECONDS = 0.2  # between two looks at a stopped step's process group


class StopSequence:
    """The stop of one step. ``send(signal_name)`` signals the step's process group and
    tells whether the signal was sent; ``grace`` is the seconds between TERM and KILL.
    ``clock`` and ``sleep`` are ``time.monotonic`` and ``time.sleep`` unless given."""

    def __init__(self, send: Callable[[str], bool], grace: float,
                 clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.send = send
        self.grace = grace
        self.clock = clock or time.monotonic
        # Looked up now, not at import: an async mode's monkey-patching replaces it.
        self.sleep = sleep or time.sleep
        self.reason: str | None = None  # why the control stopped the step; None: it did not
        self.signal: str | None = None  # the last signal that reached the step
        self.term_sent_at: float | None = None
        self.killed = False  # KILL was tried in the read loop

    def check(self, control: StepControl) -> bool:
        """One round of the read loop: TERM when ``control`` first asks to stop, KILL
        when the grace period is over. True once KILL is a grace period old: the
        remote ignores even KILL, stop waiting for it."""
        now = self.clock()
        if self.reason is None:
            self.reason = control.stop_reason()
            if self.reason:
                self._send("TERM")
                self.term_sent_at = now
        elif not self.killed and self.term_sent_at is not None \
                and now - self.term_sent_at >= self.grace:
            self._send("KILL")
            self.killed = True
        elif self.killed and self.term_sent_at is not None \
                and now - self.term_sent_at >= self.grace * 2:
            return True
        return False

    def finish(self, step_running: Callable[[], bool]) -> None:
        """After the step's output ended: if it was stopped and not killed yet, KILL
        what is left of its process group once the grace period is over.

        After TERM the channel ends as soon as the wrapper's own processes die, but a
        command that ignores TERM runs on in the step's process group.
        ``step_running()`` tells whether the group still runs (a
        :class:`TransportError` when the connection is gone: nothing more can be done)."""
        if self.reason is None or self.killed:
            return
        deadline = (self.term_sent_at or self.clock()) + self.grace
        while True:
            try:
                alive = step_running()
            except TransportError:
                return
            if not alive:
                return
            if self.clock() >= deadline:
                self._send("KILL")
                return
            self.sleep(POLL_SECONDS)  # polling the group until the grace period ends

    def _send(self, signal_name: str) -> None:
        if self.send(signal_name):
            self.signal = signal_name
