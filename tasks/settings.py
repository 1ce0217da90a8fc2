"""The engine's settings: one typed field per config key, read once in the factory.

Each field names the key of ``config.DEFAULTS`` it is read from (its name there,
without ``PATCHBAY_``) and takes its default from there, so a setting is written down
once; ``EngineSettings.from_config(app.config)`` reads them all, and a job's run gets
its share (:class:`RunSettings`, the same fields) by name. An engine built without a
console (tests, scripts) gets the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from config import DEFAULTS


def _setting(key: str, read: Callable[[Any], Any], unset: Any = None) -> Any:
    """A field read from config key ``key`` with ``read``; by default the key's default
    (``unset`` where that is None: filled in when the console loads its config)."""
    default = DEFAULTS[key]
    return field(default=unset if default is None else read(default),
                 metadata={"config_key": key, "read": read})


def _as_is(value: Any) -> Any:
    return value


@dataclass
class RunSettings:
    """What every job run of this process shares."""

    step_timeout: float = _setting("STEP_TIMEOUT", float)
    flush_interval: float = _setting("OUTPUT_FLUSH_INTERVAL", float)
    flush_lines: int = _setting("OUTPUT_FLUSH_LINES", int)
    remote_run_dir: str = _setting("REMOTE_RUN_DIR", str)
    reattach_timeout: float = _setting("REATTACH_TIMEOUT", float)
    remote_run_retention: float = _setting("REMOTE_RUN_RETENTION", float)
    # bytes of output (both streams) that stop a step
    max_step_output: int = _setting("MAX_STEP_OUTPUT", int)
    max_job_output: int = _setting("MAX_JOB_OUTPUT", int)  # bytes stored per job


@dataclass
class EngineSettings(RunSettings):
    """The engine's settings: the runs' share and what planning and SSH need."""

    default_parallel: int = _setting("DEFAULT_PARALLEL", int)
    max_concurrent_hosts: int = _setting("MAX_CONCURRENT_HOSTS", int)
    connect_timeout: float = _setting("SSH_CONNECT_TIMEOUT", float)
    # bytes: each step channel's SSH window (tasks/transport/ssh.py)
    ssh_window: int = _setting("SSH_WINDOW", int)
    kill_grace: float = _setting("KILL_GRACE", float)
    # The console names itself when it loads its config; "local" for an engine alone.
    node_id: str = _setting("NODE_ID", str, unset="local")
    # For servers whose inventory names none (None: ~/.ssh/known_hosts).
    known_hosts: str | None = _setting("KNOWN_HOSTS", _as_is)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EngineSettings:
        """Every setting read from ``config`` (the app's), by its key."""
        return cls(**{setting.name: setting.metadata["read"](
            config[setting.metadata["config_key"]]) for setting in fields(cls)})

    def run_settings(self) -> RunSettings:
        return RunSettings(**{setting.name: getattr(self, setting.name)
                              for setting in fields(RunSettings)})
