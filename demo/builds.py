"""Build downloads for the Patchbay demo fleet (stdlib only).

``fetch`` copies one build from the demo's build mirror to a file on this host in
chunks, at most ``--rate`` MiB/s (``0``: as fast as the disk allows), printing a
line at every tenth of the way::

    downloading build 1.4.2: 40% (8.0 MiB of 20.0 MiB, 2.3 MiB/s)

and checks the copy against the SHA-256 the mirror publishes with the build.

The mirror is a directory standing in for a CI's artifact store. It publishes a
build the first time any host asks for its version (a tar holding ``VERSION`` and
an assets file of random bytes), so every ``x.y.z`` can be rolled out.

The demo fleet copies this file to every host as ``bin/builds.py``, so it must
keep running as a standalone script.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import os
import random
import re
import sys
import tarfile
import time
from pathlib import Path
from typing import TextIO

MIB = 1024 * 1024
BUILD_SIZE = 20 * MIB  # the assets of every demo build
PROGRESS_EVERY = 10  # percent
# A link's speed varies from chunk to chunk by up to this fraction either way.
JITTER = 0.25
VERSION_PATTERN = re.compile(r"[0-9]+(\.[0-9]+){2}")


class BuildError(Exception):
    """The build cannot be published or fetched."""


def publish(mirror: Path, version: str) -> Path:
    """Return the mirror's archive of ``version``, building it first if it is new."""
    if not VERSION_PATTERN.fullmatch(version):
        raise BuildError(f"not a build version: {version!r} (want x.y.z)")
    archive = mirror / f"game-{version}.tar"
    checksum = _checksum_file(archive)
    mirror.mkdir(parents=True, exist_ok=True)
    # Hosts of one rollout ask for the same new version at once: one builds it.
    with open(mirror / ".publish.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not checksum.exists():
            _build(archive, version)
    return archive


def published_sha256(archive: Path) -> str:
    """The SHA-256 (hex) the mirror publishes for ``archive``."""
    return _checksum_file(archive).read_text().split()[0]


def fetch(archive: Path, dest: Path, version: str, rate: float,
          out: TextIO = sys.stdout) -> None:
    """Copy ``archive`` to ``dest`` in chunks at most ``rate`` MiB/s (0: unthrottled),
    printing progress to ``out``; raises BuildError if the copy's SHA-256 is wrong."""
    total = archive.stat().st_size
    # A hundredth of the file, rounded up: progress lines then fall on whole tenths.
    chunk_size = max(1, -(-total // 100))
    throttle = (f"throttled to {rate:.1f} MiB/s (this host's link)" if rate > 0
                else "at full speed (no throttle)")
    _say(out, f"fetching build {version} from {archive} ({_mib(total)}), {throttle}")
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    started = mark_time = time.monotonic()
    scheduled = 0.0  # seconds into the download at which the bytes so far are due
    done = mark_bytes = 0
    next_mark = PROGRESS_EVERY
    with open(archive, "rb") as source, open(part, "wb") as sink:
        while chunk := source.read(chunk_size):
            sink.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if rate > 0:
                speed = rate * MIB * random.uniform(1 - JITTER, 1 + JITTER)
                scheduled += len(chunk) / speed
                time.sleep(max(0.0, scheduled - (time.monotonic() - started)))
            percent = done * 100 // total
            if percent >= next_mark:
                now = time.monotonic()
                speed_now = (done - mark_bytes) / max(now - mark_time, 1e-6)
                _say(out, f"downloading build {version}: {percent}% "
                          f"({_mib(done)} of {_mib(total)}, {speed_now / MIB:.1f} MiB/s)")
                mark_time, mark_bytes = now, done
                next_mark = (percent // PROGRESS_EVERY + 1) * PROGRESS_EVERY
    elapsed = time.monotonic() - started
    want = published_sha256(archive)
    if digest.hexdigest() != want:
        part.unlink()
        raise BuildError(f"build {version}: SHA-256 {digest.hexdigest()} of the copy "
                         f"does not match the published {want}")
    os.replace(part, dest)
    _say(out, f"downloaded build {version} in {elapsed:.1f} s "
              f"({total / MIB / max(elapsed, 1e-6):.1f} MiB/s), SHA-256 {want[:16]} verified")


def _checksum_file(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


def _build(archive: Path, version: str) -> None:
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}")
    with tarfile.open(tmp, "w") as tar:
        for name, data in (("VERSION", f"{version}\n".encode()),
                           ("assets.pak", os.urandom(BUILD_SIZE))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256()
    with open(tmp, "rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    os.replace(tmp, archive)
    # Written last: a checksum file means the archive beside it is complete.
    checksum = _checksum_file(archive)
    checksum_tmp = checksum.with_name(f".{checksum.name}.{os.getpid()}")
    checksum_tmp.write_text(f"{digest.hexdigest()}  {archive.name}\n")
    os.replace(checksum_tmp, checksum)


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def _say(out: TextIO, line: str) -> None:
    # Flushed at once: the console streams the step's output as it is written.
    print(line, file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download a build from the mirror")
    fetch_cmd.add_argument("--mirror", type=Path, required=True, help="the build mirror")
    fetch_cmd.add_argument("--version", required=True, help="build version, x.y.z")
    fetch_cmd.add_argument("--to", type=Path, required=True, help="file to write")
    fetch_cmd.add_argument("--rate", type=float, default=0.0,
                           help="at most this many MiB/s; 0: no throttle")
    args = parser.parse_args(argv)

    try:
        archive = publish(args.mirror, args.version)
        fetch(archive, args.to, args.version, args.rate)
    except (OSError, BuildError, tarfile.TarError) as exc:
        print(f"builds {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
