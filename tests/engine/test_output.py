"""Output plumbing without SSH: coalescing lines into events, splitting byte chunks into
lines with their byte offsets, and the remote step scripts run by a local shell."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tasks.running.output import HostOutput
from tasks.transport.remote_scripts import (
    AGENT_MARKER,
    AGENT_SCRIPT,
    ATTACH_SCRIPT,
    REMOVE_REQUEST,
    SIGNAL_SCRIPT,
    STATUS_SCRIPT,
    remote_script,
    step_request,
)
from tasks.transport.step_output import MAX_LINE_BYTES, LineSplitter, StepStream

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


def run_agent(tmp_path, commands: list[str], shell: str = "sh", remove: bool = False
              ) -> subprocess.CompletedProcess[bytes]:
    """Run AGENT_SCRIPT as sshd would (in a login shell leading its own session), sent
    ``commands`` as steps 0, 1, ... with tokens t0, t1, ..., each step's output
    starting where the last one's end marker line ended."""
    host_dir = tmp_path / "run" / "h"
    requests = b""
    for index, command in enumerate(commands):
        requests += step_request(str(index), f"t{index}", (0, 0), command)
    return subprocess.run(["setsid", "-w", shell, "-c",
                           remote_script(AGENT_SCRIPT, str(host_dir), "a1")],
                          input=requests + (REMOVE_REQUEST if remove else b""),
                          capture_output=True, timeout=10, check=False, cwd=tmp_path)


def step_outputs(stream: bytes, count: int) -> list[tuple[bytes, int]]:
    """Each step's bytes and exit status, cut at its end marker."""
    found = []
    for index in range(count):
        marker = b"\n@@patchbay-end t%d " % index
        output, _, stream = stream.partition(marker)
        status, _, stream = stream.partition(b"\n")
        found.append((output, int(status)))
    return found


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_the_agent_names_itself_first_and_ends_each_step_with_its_exit_code(tmp_path, shell):
    result = run_agent(tmp_path, ["echo hi; exit 7", "printf 'no newline'", "echo; echo"],
                       shell)

    first, stream = result.stdout.split(b"\n", 1)
    assert re.fullmatch(re.escape(AGENT_MARKER) + rb"[0-9]+", first)
    assert step_outputs(stream, 3) == [(b"hi\n", 7), (b"no newline", 0), (b"\n\n", 0)]
    assert step_outputs(result.stderr, 3) == [(b"", 7), (b"", 0), (b"", 0)]
    assert result.returncode == 0  # it ends at the end of its input


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_steps_write_output_pgid_start_and_status_to_the_host_run_directory(tmp_path,
                                                                          shell):
    result = run_agent(tmp_path, ["echo out; echo err >&2; printf tail; exit 3",
                                  "echo two"], shell)

    run = tmp_path / "run" / "h"
    pgid = result.stdout.split(b"\n", 1)[0].removeprefix(AGENT_MARKER).decode()
    assert (run / "out.a1").read_bytes() == (
        b"out\ntail\n@@patchbay-end t0 3\ntwo\n\n@@patchbay-end t1 0\n")
    assert (run / "err.a1").read_bytes() == (
        b"err\n\n@@patchbay-end t0 3\n\n@@patchbay-end t1 0\n")
    assert (run / "0.status").read_text() == "3\n"
    assert (run / "1.status").read_text() == "0\n"
    assert (run / "0.pgid").read_text() == pgid + "\n"
    agent, out, err, token, _out_tee, _err_tee = (run / "1.start").read_text().split()
    assert (agent, out, err, token) == ("a1", "0", "0", "t1")  # as the request said


def test_the_step_runs_in_the_shell_session_and_group_and_in_its_working_directory(
        tmp_path):
    result = run_agent(tmp_path, ["awk '{print $5, $6}' /proc/$$/stat; pwd"])

    first, stream = result.stdout.split(b"\n", 1)
    pgid = first.removeprefix(AGENT_MARKER).decode()
    [(output, _)] = step_outputs(stream, 1)
    assert output.decode().splitlines() == [f"{pgid} {pgid}", str(tmp_path)]


@pytest.mark.parametrize("command", [
    "printf '%s\\n' \"it's\" '$(id)' '`id`' '*'",
    "for i in 1 2 3; do echo $i; done",
    "x='a  b'; echo \"$x\"; echo $x",
    "echo no newline at the end | tr -d '\\n'",
    "echo \"[$1] [$#] [$__pb_c] [$__pb_h] [$__pb_n]\"",
    "echo one\n  echo '  two  '\n\necho 'multi\nline'\\\n",
    "cd /; echo $PWD",
])
def test_the_command_text_reaches_the_shell_unchanged(tmp_path, command):
    direct = subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=10,
                            check=False)

    wrapped = run_agent(tmp_path, [command, "pwd"])

    [(output, _), (cwd, _)] = step_outputs(wrapped.stdout.split(b"\n", 1)[1], 2)
    assert output == direct.stdout
    assert cwd == str(tmp_path).encode() + b"\n"  # a step's `cd` stays in its subshell


def test_a_syntax_error_is_the_step_s_own_failure(tmp_path):
    result = run_agent(tmp_path, ["echo ( oops", "echo fine"])

    assert step_outputs(result.stdout.split(b"\n", 1)[1], 2) == [(b"", 2), (b"fine\n", 0)]
    assert b"Syntax error" in result.stderr
    assert (tmp_path / "run" / "h" / "0.status").read_text() == "2\n"


def test_the_remove_request_removes_the_host_run_directory(tmp_path):
    result = run_agent(tmp_path, ["echo x"], remove=True)

    assert result.returncode == 0
    assert not (tmp_path / "run" / "h").exists()


def test_status_and_attach_read_a_finished_step_from_offsets(tmp_path):
    run_agent(tmp_path, ["echo zero", "echo one; echo two; echo e1 >&2; echo e2 >&2; exit 4"])
    host_dir = str(tmp_path / "run" / "h")
    run = tmp_path / "run" / "h"
    # The console sent step 1's start: what it had read when it sent the step.
    start = (run / "1.start").read_text().split()
    start[1:3] = [str(len(b"zero\n\n@@patchbay-end t0 0\n")), str(len(b"\n@@patchbay-end t0 0\n"))]
    (run / "1.start").write_text(" ".join(start) + "\n")

    status = subprocess.run(["sh", "-c", remote_script(STATUS_SCRIPT, host_dir, "1")],
                            capture_output=True, text=True, check=True)
    rest = subprocess.run(["sh", "-c", remote_script(ATTACH_SCRIPT, host_dir, "1", "4", "3")],
                          capture_output=True, check=True, timeout=10)

    state, _, code = status.stdout.split()
    assert (state, code) == ("exited", "4")
    assert rest.stdout == b"@@patchbay-attach t1\ntwo\n\n@@patchbay-end t1 4\n"
    assert rest.stderr == b"e2\n\n@@patchbay-end t1 4\n"


def test_status_of_a_step_that_never_started_is_missing(tmp_path):
    status = subprocess.run(["sh", "-c", remote_script(STATUS_SCRIPT, str(tmp_path / "x"),
                                                       "0")],
                            capture_output=True, text=True, check=True)

    assert status.stdout.split()[0] == "missing"


def test_a_step_started_before_the_agent_is_still_read_from_its_own_directory(tmp_path):
    """A console upgraded mid-job finds the running step's files where the console
    before the agent left them (<host dir>/<step>/): status, output and signals."""
    step = tmp_path / "run" / "h" / "0"
    step.mkdir(parents=True)
    (step / "pgid").write_text("999999999\n")  # no such group: it has ended
    (step / "out").write_bytes(b"one\ntwo\n")
    (step / "err").write_bytes(b"e1\ne2\n")
    (step / "status").write_text("4\n")
    host_dir = str(tmp_path / "run" / "h")

    status = subprocess.run(["sh", "-c", remote_script(STATUS_SCRIPT, host_dir, "0")],
                            capture_output=True, text=True, check=True)
    rest = subprocess.run(["sh", "-c", remote_script(ATTACH_SCRIPT, host_dir, "0", "4", "3")],
                          capture_output=True, check=True, timeout=10)
    signal = subprocess.run(["sh", "-c", remote_script(SIGNAL_SCRIPT, "TERM", host_dir, "0")],
                            capture_output=True, check=False, timeout=10)

    assert status.stdout.split() == ["exited", "999999999", "4"]
    assert rest.stdout == b"@@patchbay-attach before0agent\ntwo\n"
    assert rest.stderr == b"e2\n"
    assert signal.returncode == 0  # it had ended: nothing to signal


# --- StepStream: a step's output up to its end marker ------------------------------------


@pytest.mark.parametrize("output", [
    b"", b"a", b"a\n", b"a\n\n", b"\n", b"\n\n", b"x\r", b"x\r\n", b"\r", b"a\nb",
    b"@@patchbay-end t 3", b"\n@@patchbay-end other 0\n",
])
@pytest.mark.parametrize("cut", range(1, 30, 3))
def test_a_step_stream_gives_the_step_s_lines_and_offset_wherever_reads_cut_it(output, cut):
    emitted: list[tuple[str, int]] = []
    stream = StepStream(LineSplitter("stdout", lambda _s, text, offset:
                                     emitted.append((text, offset))), "t")
    data = output + b"\n@@patchbay-end t 3\nthe next step's\n"

    for start in range(0, len(data), cut):
        stream.feed(data[start:start + cut])

    expected = output.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert [text for text, _ in emitted] == [
        line.removesuffix(b"\r").decode() for line in expected]
    assert (stream.ended, stream.exit_code, stream.offset) == (True, 3, len(output))
    assert stream.rest == b"the next step's\n"


def test_packet_macs_are_compared_in_constant_time_by_the_c_function():
    """tasks.transport.ssh hands paramiko's per-packet MAC check to hmac.compare_digest: the same
    answers (also for a length mismatch) as paramiko's own Python loop."""
    import hmac

    import paramiko

    import tasks.transport.ssh  # noqa: F401 - the import makes the change

    check = paramiko.util.constant_time_bytes_eq
    assert check is hmac.compare_digest
    mac = bytes(range(32))
    assert check(mac, bytes(mac))
    assert not check(mac, mac[:31] + b"\xff")
    assert not check(mac, mac[:16])
