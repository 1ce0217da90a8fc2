"""The text of a failure as it goes into a :class:`~tasks.transport.protocol.TransportError`:
one line, which job pages and events show."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), at most
    300 characters."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
