"""Output plumbing without SSH: coalescing lines into events, splitting byte chunks into
lines with their byte offsets, and the remote step scripts run by a local shell."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tasks.output import HostOutput
from tasks.ssh import (
    ATTACH_SCRIPT,
    MAX_LINE_BYTES,
    PGID_MARKER,
    START_SCRIPT,
    STATUS_SCRIPT,
    LineSplitter,
    remote_script,
)

MAX_LINE_CHARS = MAX_LINE_BYTES  # the long-line tests use one-byte characters

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


# --- LineSplitter --------------------------------------------------------------------


def split(chunks: list[bytes], close: bool = True) -> list[tuple[str, str]]:
    emitted: list[tuple[str, str]] = []
    splitter = LineSplitter("stdout",
                            lambda stream, line, offset: emitted.append((stream, line)))
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


def test_each_line_carries_the_byte_offset_just_after_it():
    emitted: list[tuple[str, int]] = []
    splitter = LineSplitter("stdout", lambda _s, line, offset: emitted.append((line, offset)))
    data = "café\r\nx\n\nlast".encode()

    for byte in one_byte_at_a_time(data):
        splitter.feed(byte)
    splitter.close()

    assert emitted == [("café", 7), ("x", 9), ("", 10), ("last", 14)]
    assert splitter.offset == len(data)


def test_a_splitter_can_start_at_an_offset():
    emitted: list[int] = []
    splitter = LineSplitter("stderr", lambda _s, _l, offset: emitted.append(offset), 100)

    splitter.feed(b"a\nbc\n")

    assert emitted == [102, 105]


def test_long_multibyte_lines_are_cut_at_character_boundaries():
    line = "é" * MAX_LINE_BYTES  # two bytes each
    pieces = [text for _, text in split([(line + "\n").encode()])]

    assert "".join(pieces) == line
    assert "\ufffd" not in "".join(pieces)


# --- the remote step scripts, run by a local shell ---------------------------------------


def run_step(tmp_path, command: str, shell: str = "sh") -> subprocess.CompletedProcess[str]:
    """Run START_SCRIPT as sshd would: in a login shell leading its own session."""
    return subprocess.run(["setsid", "-w", shell, "-c",
                           remote_script(START_SCRIPT, command, str(tmp_path / "run" / "0"))],
                          capture_output=True, text=True, timeout=10, check=False,
                          cwd=tmp_path)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_step_prints_its_process_group_first_and_keeps_the_exit_code(tmp_path, shell):
    result = run_step(tmp_path, "echo hi; exit 7", shell)

    first, *rest = result.stdout.split("\n")
    assert re.fullmatch(re.escape(PGID_MARKER.decode()) + r"[0-9]+", first)
    assert rest == ["hi", ""]
    assert result.returncode == 7


def test_a_step_writes_its_output_pgid_and_status_to_its_run_directory(tmp_path):
    result = run_step(tmp_path, "echo out; echo err >&2; printf tail; exit 3")

    run = tmp_path / "run" / "0"
    pgid = result.stdout.splitlines()[0].removeprefix(PGID_MARKER.decode())
    assert (run / "out").read_bytes() == b"out\ntail"
    assert (run / "err").read_bytes() == b"err\n"
    assert (run / "status").read_text() == "3\n"
    assert (run / "pgid").read_text() == pgid + "\n"
    assert (run / "exit").read_text() == "3\n"


def test_the_step_runs_in_the_shell_session_and_group_and_in_its_working_directory(
        tmp_path):
    result = run_step(tmp_path, "awk '{print $5, $6}' /proc/$$/stat; pwd")

    marker, group_and_session, cwd = result.stdout.splitlines()
    pgid = marker.removeprefix(PGID_MARKER.decode())
    assert group_and_session == f"{pgid} {pgid}"
    assert cwd == str(tmp_path)


@pytest.mark.parametrize("command", [
    "printf '%s\\n' \"it's\" '$(id)' '`id`' '*'",
    "for i in 1 2 3; do echo $i; done",
    "x='a  b'; echo \"$x\"; echo $x",
    "echo no newline at the end | tr -d '\\n'",
    "echo \"[$1] [$#] [$__pb_c] [$__pb_d]\"",
])
def test_the_command_text_reaches_the_shell_unchanged(tmp_path, command):
    direct = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                            timeout=10, check=False)

    wrapped = run_step(tmp_path, command)

    assert wrapped.stdout.split("\n", 1)[1] == direct.stdout


def test_a_syntax_error_is_the_step_s_own_failure(tmp_path):
    result = run_step(tmp_path, "echo ( oops")

    assert result.returncode == 2
    assert "Syntax error" in result.stderr
    assert (tmp_path / "run" / "0" / "status").read_text() == "2\n"


def test_status_and_attach_read_a_finished_step_from_offsets(tmp_path):
    run_step(tmp_path, "echo one; echo two; echo e1 >&2; echo e2 >&2; exit 4")
    where = str(tmp_path / "run" / "0")

    status = subprocess.run(["sh", "-c", remote_script(STATUS_SCRIPT, where)],
                            capture_output=True, text=True, check=True)
    rest = subprocess.run(["sh", "-c", remote_script(ATTACH_SCRIPT, where, "5", "4")],
                          capture_output=True, text=True, check=True)

    state, _, code = status.stdout.split()
    assert (state, code) == ("exited", "4")
    assert (rest.stdout, rest.stderr) == ("two\n", "e2\n")


def test_status_of_a_step_that_never_started_is_missing(tmp_path):
    status = subprocess.run(["sh", "-c", remote_script(STATUS_SCRIPT, str(tmp_path / "x"))],
                            capture_output=True, text=True, check=True)

    assert status.stdout.split()[0] == "missing"


def test_packet_macs_are_compared_in_constant_time_by_the_c_function():
    """tasks.ssh hands paramiko's per-packet MAC check to hmac.compare_digest: the same
    answers (also for a length mismatch) as paramiko's own Python loop."""
    import hmac

    import paramiko

    import tasks.ssh  # noqa: F401 - the import makes the change

    check = paramiko.util.constant_time_bytes_eq
    assert check is hmac.compare_digest
    mac = bytes(range(32))
    assert check(mac, bytes(mac))
    assert not check(mac, mac[:31] + b"\xff")
    assert not check(mac, mac[:16])
