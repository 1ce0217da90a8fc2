"""Output plumbing without SSH: coalescing lines into events, splitting byte chunks into
lines, and the process-group wrapper run by a local shell."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tasks.output import HostOutput
from tasks.ssh import MAX_LINE_CHARS, PGID_MARKER, _LineSplitter, wrap_command

HUGE = 1e9  # an interval that never passes during a test


class FakeEventLog:
    """Records what would have been appended to the job's event log."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str | None, dict[str, Any]]] = []

    def append(self, job_id: int, type: str, host: str | None, data: dict[str, Any]) -> None:
        self.events.append((job_id, type, host, data))

    @property
    def batches(self) -> list[tuple[str, list[str]]]:
        return [(data["stream"], list(data["lines"])) for _, _, _, data in self.events]


def host_output(interval: float = HUGE, max_lines: int = 100) -> tuple[HostOutput, FakeEventLog]:
    log = FakeEventLog()
    return HostOutput(log, 42, "gs-01", "deploy", interval=interval,
                      max_lines=max_lines), log


# --- HostOutput ----------------------------------------------------------------------


def test_lines_are_coalesced_into_one_event():
    output, log = host_output()

    for number in range(5):
        output.line("stdout", f"line {number}")
    output.flush()

    assert log.events == [(42, "output", "gs-01", {
        "stream": "stdout", "step": "deploy",
        "lines": ["line 0", "line 1", "line 2", "line 3", "line 4"]})]


def test_nothing_is_appended_before_a_flush_reason():
    output, log = host_output()

    output.line("stdout", "one")
    output.line("stdout", "two")

    assert log.events == []


def test_a_full_buffer_is_flushed_at_max_lines():
    output, log = host_output(max_lines=3)

    for number in range(7):
        output.line("stdout", str(number))

    assert log.batches == [("stdout", ["0", "1", "2"]), ("stdout", ["3", "4", "5"])]
    assert output.lines == ["6"]


def test_a_change_of_stream_flushes():
    output, log = host_output()

    output.line("stdout", "out 1")
    output.line("stdout", "out 2")
    output.line("stderr", "err 1")
    output.line("stdout", "out 3")
    output.flush()

    assert log.batches == [("stdout", ["out 1", "out 2"]), ("stderr", ["err 1"]),
                           ("stdout", ["out 3"])]


def test_tick_does_not_flush_before_the_interval():
    output, log = host_output(interval=HUGE)
    output.line("stdout", "waiting")

    output.tick()

    assert log.events == []


def test_tick_flushes_once_the_interval_has_passed():
    output, log = host_output(interval=HUGE)
    output.line("stdout", "waiting")
    output.interval = 0  # as if the interval had elapsed since the first line

    output.tick()

    assert log.batches == [("stdout", ["waiting"])]


def test_with_a_zero_interval_every_line_goes_out_at_once():
    output, log = host_output(interval=0)

    output.line("stdout", "a")
    output.line("stdout", "b")

    assert log.batches == [("stdout", ["a"]), ("stdout", ["b"])]


def test_tick_and_flush_with_nothing_buffered_append_nothing():
    output, log = host_output(interval=0)

    output.tick()
    output.flush()

    assert log.events == []


def test_a_flushed_event_is_not_changed_by_later_lines():
    output, log = host_output(max_lines=2)
    output.line("stdout", "a")
    output.line("stdout", "b")
    sent = log.events[0][3]["lines"]

    output.line("stdout", "c")
    output.flush()

    assert sent == ["a", "b"]


@pytest.mark.parametrize(("lines", "last"), [
    ([], None),
    ([("stdout", "1.4.2")], "1.4.2"),
    ([("stdout", "  1.4.2  ")], "1.4.2"),
    ([("stdout", "1.4.1"), ("stdout", "1.4.2")], "1.4.2"),
    ([("stdout", "1.4.2"), ("stdout", ""), ("stdout", "   ")], "1.4.2"),
    ([("stdout", "1.4.2"), ("stderr", "warning: slow disk")], "1.4.2"),
    ([("stderr", "only errors")], None),
], ids=repr)
def test_last_stdout_line(lines, last):
    output, _ = host_output()

    for stream, text in lines:
        output.line(stream, text)

    assert output.last_stdout_line == last


# --- _LineSplitter -------------------------------------------------------------------


def split(chunks: list[bytes], close: bool = True) -> list[tuple[str, str]]:
    emitted: list[tuple[str, str]] = []
    splitter = _LineSplitter("stdout", lambda stream, line: emitted.append((stream, line)))
    for chunk in chunks:
        splitter.feed(chunk)
    if close:
        splitter.close()
    return emitted


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def test_lines_are_split_on_newlines():
    assert split([b"one\ntwo\n", b"three\n"]) == [
        ("stdout", "one"), ("stdout", "two"), ("stdout", "three")]


def test_a_line_split_across_chunks_is_joined():
    assert split([b"hel", b"lo wo", b"rld\n"]) == [("stdout", "hello world")]


@pytest.mark.parametrize("text", ["é", "café\n", "日本語のログ\n", "🎮 game on\n"])
def test_multibyte_utf8_fed_byte_by_byte_decodes(text):
    lines = split(one_byte_at_a_time(text.encode()))

    assert lines == [("stdout", text.rstrip("\n"))]


def test_invalid_utf8_is_replaced_not_fatal():
    assert split([b"bad \xff byte\n"]) == [("stdout", "bad \ufffd byte")]


def test_crlf_line_endings_are_stripped():
    assert split([b"one\r\ntwo\r", b"\nthree\r\n"]) == [
        ("stdout", "one"), ("stdout", "two"), ("stdout", "three")]


def test_partial_last_line_is_kept_until_close():
    assert split([b"done\nno newline at the end"], close=False) == [("stdout", "done")]


def test_partial_last_line_is_emitted_on_close():
    assert split([b"done\nno newline at the end"]) == [
        ("stdout", "done"), ("stdout", "no newline at the end")]


def test_truncated_multibyte_sequence_at_close_is_replaced():
    assert split([b"caf\xc3"]) == [("stdout", "caf\ufffd")]


def test_empty_lines_are_kept():
    assert split([b"a\n\nb\n"]) == [("stdout", "a"), ("stdout", ""), ("stdout", "b")]


def test_nothing_is_emitted_for_no_output():
    assert split([b""]) == []


@pytest.mark.parametrize("chunk_size", [1000, 65_536], ids=["small-chunks", "one-chunk"])
def test_very_long_lines_are_cut_at_max_line_chars(chunk_size):
    line = "".join(chr(ord("a") + i % 26) for i in range(MAX_LINE_CHARS * 2 + 123))
    data = (line + "\nafter\n").encode()

    pieces = [text for _, text in split(
        [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)])]

    assert pieces[-1] == "after"
    assert "".join(pieces[:-1]) == line
    assert [len(piece) for piece in pieces[:-1]] == [MAX_LINE_CHARS, MAX_LINE_CHARS, 123]


def test_a_long_line_without_newline_is_not_buffered_whole():
    emitted = split([b"x" * (MAX_LINE_CHARS * 3 + 1)], close=False)

    assert emitted == [("stdout", "x" * MAX_LINE_CHARS)] * 3


# --- wrap_command --------------------------------------------------------------------


def run_wrapped(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", wrap_command(command)], capture_output=True,
                          text=True, timeout=10, check=False)


def test_wrapped_command_prints_its_process_group_first_and_keeps_the_exit_code():
    result = run_wrapped("echo hi; exit 7")

    first, *rest = result.stdout.split("\n")
    assert re.fullmatch(re.escape(PGID_MARKER) + r"[0-9]+", first)
    assert rest == ["hi", ""]
    assert result.returncode == 7


def test_the_marker_is_the_group_of_the_command():
    result = run_wrapped("awk '{print $5}' /proc/$$/stat")  # field 5: process group

    marker, pgid = result.stdout.splitlines()
    assert marker == PGID_MARKER + pgid


def test_the_command_runs_in_a_new_session():
    result = run_wrapped("awk '{print $6}' /proc/$$/stat; echo $$")  # field 6: session

    _, sid, pid = result.stdout.splitlines()
    assert sid == pid


@pytest.mark.parametrize("command", [
    "printf '%s\\n' \"it's\" '$(id)' '`id`' '*'",
    "for i in 1 2 3; do echo $i; done",
    "x='a  b'; echo \"$x\"; echo $x",
    "echo no newline at the end | tr -d '\\n'",
])
def test_the_command_text_reaches_the_shell_unchanged(command):
    direct = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                            timeout=10, check=False)

    wrapped = run_wrapped(command)

    assert wrapped.stdout.split("\n", 1)[1] == direct.stdout


def test_stderr_and_success_pass_through():
    result = run_wrapped("echo oops >&2; echo fine")

    assert result.stdout.splitlines()[1:] == ["fine"]
    assert result.stderr == "oops\n"
    assert result.returncode == 0
