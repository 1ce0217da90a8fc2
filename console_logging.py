"""The console's own log: one format, the level of ``PATCHBAY_LOG_LEVEL`` (INFO by
default), each job's start and end (``patchbay.jobs``, see :mod:`tasks.running.job_log`),
and the SSH library's per-connection chatter ("Connected (version …)",
"Authentication (publickey) successful!") only at DEBUG."""

from __future__ import annotations

import logging

# Libraries that log every SSH connection at INFO: at WARNING unless the console logs
# at DEBUG (their warnings and errors still show).
CHATTY_LIBRARIES = ("paramiko", "fabric", "invoke")


def configure_logging(level: str | int) -> None:
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    debugging = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if debugging else logging.WARNING)
