"""Where ``patchbay login`` keeps its tokens: ``$XDG_CONFIG_HOME/patchbay/config.json``.

One token per console URL, so a token is only ever sent to the console that issued
it; the URL last logged in to is the default. The file is mode 0600 in a 0700 folder,
and holds no password.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def normalize_url(url: str) -> str:
    """``https://console.example/`` and ``https://console.example`` are one console."""
    return url.strip().rstrip("/")


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "patchbay" / "config.json"


def load() -> dict[str, Any]:
    """The stored settings; empty when there are none (or they cannot be read)."""
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def default_url() -> str | None:
    url = load().get("default_url")
    return url if isinstance(url, str) and url else None


def stored_token(url: str) -> str | None:
    """The token stored for this console, if any."""
    entry = load().get("consoles", {}).get(normalize_url(url))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def save_login(url: str, token: str, **about: Any) -> Path:
    """Store ``token`` for ``url`` (and make that the default console)."""
    url = normalize_url(url)
    data = load()
    consoles = data.get("consoles") if isinstance(data.get("consoles"), dict) else {}
    consoles[url] = {"token": token, **about}
    data.update(default_url=url, consoles=consoles)
    return _write(data)


def forget_login(url: str) -> dict[str, Any] | None:
    """Remove what is stored for ``url``; returns what was removed."""
    url = normalize_url(url)
    data = load()
    entry = data.get("consoles", {}).pop(url, None)
    if entry is None:
        return None
    if data.get("default_url") == url:
        data["default_url"] = next(iter(data["consoles"]), None)
    _write(data)
    return entry


def _write(data: dict[str, Any]) -> Path:
    """Atomically, never readable by others, not even for a moment."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp creates it 0600
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
