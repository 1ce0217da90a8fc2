"""A step's output as it comes off the channel: bytes cut into lines with their byte
offsets (:class:`LineSplitter`), and the agent's end-of-step marker taken off each
stream (:class:`StepStream`).

An agent (``tasks.transport.remote_scripts.AGENT_SCRIPT``) runs a server's steps one after the
other on one channel. After each step it writes ``\\n@@patchbay-end TOKEN STATUS\\n`` to
both streams; TOKEN is the console's random name for that step. That first newline ends
the step's last line when it had none, or else makes an empty line of its own: so an
empty line right before the marker is the marker's (dropped), a partial line is the
step's (kept, with no newline counted). Bytes after the marker line are the next step's.
"""

from __future__ import annotations

from collections.abc import Iterable

from tasks.planning.secrets import masked_values
from tasks.transport.protocol import OutputSink
from tasks.transport.remote_scripts import END_MARKER

MAX_LINE_BYTES = 16_384  # longer lines are cut into pieces rather than buffered whole


class LineSplitter:
    """Cuts one stream's bytes into lines, each handed on with the byte offset just
    after it, so a reader that stops can go on at exactly the next unread byte.

    Lines are cut from bytes and decoded whole (a newline never falls inside a UTF-8
    sequence); only the partial last line is buffered, and a line longer than
    :data:`MAX_LINE_BYTES` is cut at a character boundary. With ``hold_empty`` an
    empty line is handed on only once something follows it (:class:`StepStream`
    may find it was the end marker's).

    The sink masks each piece of a cut line on its own, so a cut never falls inside
    one of ``secret_values`` (the step's secret values, as
    :func:`~tasks.planning.secrets.masked_values`
    keeps them): it moves back to where the secret begins. To see a secret the cut
    would split, a line still arriving is cut only once the longest secret's length
    less one byte beyond the cut has come. Only cutting pays for this: a line within
    the limit costs the same with secrets or without."""

    def __init__(self, stream: str, sink: OutputSink, offset: int = 0,
                 secret_values: Iterable[str] = ()) -> None:
        self.stream = stream
        self.sink = sink
        self.offset = offset  # end of the last line handed on (or held)
        self.pending = b""
        self.hold_empty = False
        self.held: int | None = None  # the offset after a held empty line
        self.secrets = [value.encode() for value in masked_values(secret_values)]
        # Bytes past a cut needed to tell whether a secret straddles it.
        self.reach = len(self.secrets[0]) - 1 if self.secrets else 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        parts = (self.pending + data).split(b"\n")
        self.pending = parts.pop()
        # The common line is handled inline: this loop runs for every line of output.
        sink, stream, hold = self.sink, self.stream, self.hold_empty
        for part in parts:
            if self.held is not None:
                self.release_held()
            if len(part) > MAX_LINE_BYTES:
                self._emit_cut(part, 1)
            elif hold and not part:
                self.offset += 1
                self.held = self.offset
            else:
                self.offset += len(part) + 1
                text = part.decode("utf-8", "replace")
                sink(stream, text[:-1] if text.endswith("\r") else text, self.offset)
        while len(self.pending) > MAX_LINE_BYTES + self.reach:
            cut = self._cut(self.pending)
            self._emit(self.pending[:cut], 0)
            self.pending = self.pending[cut:]

    def close(self) -> None:
        """Hand on what is held and the partial last line, if any (the stream has
        ended)."""
        self.release_held()
        if self.pending:
            rest, self.pending = self.pending, b""
            self._emit_cut(rest, 0)

    def release_held(self) -> None:
        if self.held is not None:
            offset, self.held = self.held, None
            self.sink(self.stream, "", offset)

    def _emit_cut(self, line: bytes, newline: int) -> None:
        while len(line) > MAX_LINE_BYTES:
            cut = self._cut(line)
            self._emit(line[:cut], 0)
            line = line[cut:]
        self._emit(line, newline)

    def _cut(self, line: bytes) -> int:
        """Where to cut a line longer than :data:`MAX_LINE_BYTES` (and, when it is
        still arriving, :attr:`reach` bytes more): at the limit, or just before it when
        that splits a UTF-8 sequence or a secret."""
        cut = _char_boundary(line, MAX_LINE_BYTES)
        # A secret the cut moved back to may overlap another one: look again, once
        # per secret at most (overlapping repeats of one secret are not masked whole
        # in an uncut line either).
        for _ in self.secrets:
            moved = False
            for secret in self.secrets:
                start = line.find(secret, max(cut - len(secret) + 1, 0),
                                  cut + len(secret) - 1)
                if start > 0:  # a secret as long as a piece cannot be kept whole
                    cut, moved = start, True
            if not moved:
                break
        return cut

    def _emit(self, line: bytes, newline: int) -> None:
        self.release_held()
        self.offset += len(line) + newline
        text = line.decode("utf-8", "replace")
        self.sink(self.stream, text[:-1] if text.endswith("\r") else text, self.offset)


def _char_boundary(data: bytes, limit: int) -> int:
    """The largest cut at or below ``limit`` that does not split a UTF-8 sequence."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > limit - 4 else limit


class StepStream:
    """One stream of an agent's (or an attach script's) channel, read for one step:
    the step's bytes go on to ``splitter`` until the step's end marker; what follows
    the marker line is kept in :attr:`rest` for the server's next step.

    ``token`` may be learned late (:meth:`set_token`): an attach script names it on its
    first line, and the other stream's bytes wait for it."""

    def __init__(self, splitter: LineSplitter, token: str | None = None) -> None:
        self.splitter = splitter
        splitter.hold_empty = True  # an empty line before the marker is the marker's
        self.start_offset = splitter.offset
        self.fed = 0  # bytes handed on to the splitter
        self.marker = b""
        self.waiting = b""  # bytes that came before the token was known
        self.tail = b""  # the last bytes handed on: a marker may straddle two reads
        self.end_line: bytes | None = None  # the marker line after the token, so far
        self.ended = False
        self.exit_code: int | None = None
        self.rest = b""
        if token is not None:
            self.set_token(token)

    @property
    def offset(self) -> int:
        return self.splitter.offset

    def set_token(self, token: str) -> None:
        self.marker = b"\n" + END_MARKER + token.encode() + b" "
        waiting, self.waiting = self.waiting, b""
        self.feed(waiting)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self.ended:
            self.rest += data
        elif not self.marker:
            self.waiting += data
        elif self.end_line is not None:
            self._end_line(data)
        else:
            self._search(data)

    def close(self) -> None:
        """The stream ended without a marker (the agent died): hand on what is held."""
        if not self.ended:
            self.splitter.close()

    def _search(self, data: bytes) -> None:
        marker = self.marker
        # A marker that began in the bytes handed on comes first; else one in `data`.
        edge = self.tail + data[:len(marker) - 1]
        found = edge.find(marker) if self.tail else -1
        if 0 <= found < len(self.tail):
            before = found - len(self.tail)
            after = found + len(marker) - len(self.tail)
        else:
            before = data.find(marker)
            if before < 0:
                self._hand_on(data)
                return
            after = before + len(marker)
        splitter = self.splitter
        if before >= 0:
            self._hand_on(data[:before])
            splitter.close()  # a partial line was the step's last, with no newline
            length = splitter.offset
        else:
            # The marker's newline was handed on: it ended the step's partial line, or
            # made the empty line held now, which is dropped. Its next bytes are pending.
            splitter.held = None
            splitter.pending = b""
            length = self.start_offset + self.fed + before
        splitter.offset = length
        self._end_line(data[after:])

    def _end_line(self, data: bytes) -> None:
        line = (self.end_line or b"") + data
        newline = line.find(b"\n")
        if newline < 0:
            self.end_line = line
            return
        code = line[:newline].strip()
        self.exit_code = int(code) if code.lstrip(b"-").isdigit() else None
        self.end_line = None
        self.ended = True
        self.rest = line[newline + 1:]

    def _hand_on(self, data: bytes) -> None:
        if data:
            self.splitter.feed(data)
            self.fed += len(data)
            keep = len(self.marker) - 1
            self.tail = data[-keep:] if len(data) >= keep else (self.tail + data)[-keep:]
