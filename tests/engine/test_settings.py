"""The engine's settings: each is read from its config key, once, with its type, and an
engine built alone (without a console) has the console's defaults."""

from __future__ import annotations

from dataclasses import fields

from config import DEFAULTS
from tasks.settings import EngineSettings, RunSettings


def test_an_engine_alone_has_the_defaults_of_the_config():
    alone = EngineSettings()

    for setting in fields(EngineSettings):
        if setting.name != "node_id":  # the console names itself when it loads its config
            assert getattr(alone, setting.name) == DEFAULTS[setting.metadata["config_key"]], \
                setting.name
    assert alone.node_id == "local"


def test_every_setting_is_read_from_its_config_key_with_its_type():
    config = {**DEFAULTS, "STEP_TIMEOUT": "90", "OUTPUT_FLUSH_LINES": "20",
              "NODE_ID": "node-7", "KNOWN_HOSTS": "/etc/patchbay/known_hosts",
              "SSH_WINDOW": 65_536, "REATTACH_TIMEOUT": 3}

    settings = EngineSettings.from_config(config)

    assert (settings.step_timeout, settings.flush_lines, settings.node_id) == \
        (90.0, 20, "node-7")
    assert (settings.known_hosts, settings.ssh_window, settings.reattach_timeout) == \
        ("/etc/patchbay/known_hosts", 65_536, 3.0)
    assert type(settings.reattach_timeout) is float and type(settings.flush_lines) is int
    assert {setting.metadata["config_key"] for setting in fields(EngineSettings)} <= \
        set(DEFAULTS)


def test_a_run_gets_its_share_of_the_settings_by_name():
    settings = EngineSettings(step_timeout=5, max_job_output=1024, kill_grace=0.2)

    shared = settings.run_settings()

    assert type(shared) is RunSettings
    assert (shared.step_timeout, shared.max_job_output) == (5, 1024)
    assert {f.name for f in fields(RunSettings)} < {f.name for f in fields(EngineSettings)}
