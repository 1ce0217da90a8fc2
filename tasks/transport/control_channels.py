"""Reading the short commands of a session (status, signal, clean-up, the agent's first
line) on channels of their own, within the connect timeout.

They are read here rather than by Fabric's ``run``, whose runner starts three green
threads per command (the clean-up after every server's last step was a tenth of a
fan-out's CPU).
"""

from __future__ import annotations

import time

import paramiko

from tasks.transport.error_text import first_line
from tasks.transport.protocol import TransportError
from tasks.transport.step_reader import READ_CHUNK


def read_first_line(channel: paramiko.Channel, timeout: float) -> tuple[bytes, bytes]:
    """The first line ``channel``'s stdout sends (without its newline), and what came
    after it; ``b""`` when the channel ends first. The channel is closed when it fails
    or says nothing within ``timeout``."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        channel.settimeout(timeout)
        while b"\n" not in data:
            chunk = channel.recv(READ_CHUNK)
            if not chunk:
                channel.status_event.wait(max(0.0, deadline - time.monotonic()))
                return data, b""
            data += chunk
            if time.monotonic() > deadline:
                raise TimeoutError
    except TimeoutError:
        channel.close()
        raise TransportError(f"the step runner did not answer within "
                             f"{timeout:g} s") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        channel.close()
        raise TransportError(f"the step runner failed: {first_line(exc)}") from None
    finally:
        channel.settimeout(None)
    first, _, rest = data.partition(b"\n")
    return first, rest


def read_control_output(channel: paramiko.Channel, timeout: float) -> tuple[int | None, str]:
    """The exit status (None if it sent none) and stdout of the command on
    ``channel``, read to its end within ``timeout``; the channel is closed after."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    try:
        channel.settimeout(timeout)
        while True:
            chunk = channel.recv(READ_CHUNK)
            if not chunk:
                break
            out += chunk
            if time.monotonic() > deadline:
                raise TimeoutError
        if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError
    except TimeoutError:
        raise TransportError(f"control command timed out after {timeout:g} s") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TransportError(f"control command failed: {first_line(exc)}") from None
    finally:
        channel.close()
    exit_code = channel.exit_status if channel.exit_status_ready() else None
    return (None if exit_code == -1 else exit_code), out.decode("utf-8", "replace")
