"""The engine's settings: one typed field per config key, read once in the factory.

Each field names the key of ``config.DEFAULTS`` it is read from (its name there,
without ``PATCHBAY_``); ``EngineSettings.from_config(app.config)`` reads them all, and
a job's run gets its share (:class:`RunSettings`, the same fields) by name. The defaults
below are those of ``config.DEFAULTS``, for an engine built without a console (tests,
scripts): the engine imports without Flask, and ``config`` does not
(tests/engine/test_settings.py holds the two to the same values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


def _setting(key: str, read: Callable[[Any], Any], default: Any) -> Any:
    """A field read from config key ``key`` with ``read``."""
    return field(default=default, metadata={"config_key": key, "read": read})


def _as_is(value: Any) -> Any:
    return value


@dataclass
class RunSettings:
    """What every job run of this process shares."""

    step_timeout: float = _setting("STEP_TIMEOUT", float, 3600)
    flush_interval: float = _setting("OUTPUT_FLUSH_INTERVAL", float, 0.05)
    flush_lines: int = _setting("OUTPUT_FLUSH_LINES", int, 500)
    remote_run_dir: str = _setting("REMOTE_RUN_DIR", str, "~/.patchbay/runs")
    reattach_timeout: float = _setting("REATTACH_TIMEOUT", float, 120)
    remote_run_retention: float = _setting("REMOTE_RUN_RETENTION", float, 7 * 86_400)
    # bytes of output (both streams) that stop a step
    max_step_output: int = _setting("MAX_STEP_OUTPUT", int, 1 << 30)
    max_job_output: int = _setting("MAX_JOB_OUTPUT", int, 2 << 30)  # bytes stored per job


@dataclass
class EngineSettings(RunSettings):
    """The engine's settings: the runs' share and what planning and SSH need."""

    default_parallel: int = _setting("DEFAULT_PARALLEL", int, 10)
    max_concurrent_hosts: int = _setting("MAX_CONCURRENT_HOSTS", int, 500)
    connect_timeout: float = _setting("SSH_CONNECT_TIMEOUT", float, 10)
    # bytes: each step channel's SSH window (tasks/transport/ssh.py)
    ssh_window: int = _setting("SSH_WINDOW", int, 32_768)
    kill_grace: float = _setting("KILL_GRACE", float, 5)
    # The console names itself when it loads its config; "local" for an engine alone.
    node_id: str = _setting("NODE_ID", str, "local")
    # For servers whose inventory names none (None: ~/.ssh/known_hosts).
    known_hosts: str | None = _setting("KNOWN_HOSTS", _as_is, None)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EngineSettings:
        """Every setting read from ``config`` (the app's), by its key."""
        return cls(**{setting.name: setting.metadata["read"](
            config[setting.metadata["config_key"]]) for setting in fields(cls)})

    def run_settings(self) -> RunSettings:
        return RunSettings(**{setting.name: getattr(self, setting.name)
                              for setting in fields(RunSettings)})
