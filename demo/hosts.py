"""The demo fleet's hosts: where each listens, where its files live, and how it
differs from the others (download speed, game load time), as a real fleet does."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

# Per host, cycled: a 20 MiB build then takes 7.7-11.8 s to download, and the
# game server 1.5-3 s to load.
LINK_MIB_PER_S = (2.4, 1.9, 2.2, 1.7, 2.6, 2.0, 1.8, 2.3)
GAME_LOAD_SECONDS = (1.5, 2.5, 2.0, 3.0)


@dataclass(frozen=True)
class DemoHost:
    """One fake game host: where it listens and where its files live."""

    index: int  # 1-based
    name: str
    address: str
    root: Path
    host_key_path: Path

    @property
    def tags(self) -> list[str]:
        """Inventory tags: regions alternate so tag filters have something to do."""
        tags = ["demo", "eu" if self.index % 2 else "us"]
        return tags + ["canary"] if self.index == 1 else tags

    @property
    def link_mib_per_s(self) -> float:
        """How fast this host downloads builds from the mirror."""
        return LINK_MIB_PER_S[(self.index - 1) % len(LINK_MIB_PER_S)]

    @property
    def game_load_seconds(self) -> float:
        """How long this host's game server loads before it answers."""
        return GAME_LOAD_SECONDS[(self.index - 1) % len(GAME_LOAD_SECONDS)]

    @property
    def pid_file(self) -> Path:
        """Pid file of this host's game server (written by the game server)."""
        return self.root / "run" / "game.pid"

    def command_env(self) -> dict[str, str]:
        """Environment for commands run on this host: clean, like a fresh login."""
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.root),
            "PATCHBAY_DEMO_HOST": self.name,
        }


def plan_hosts(state_dir: Path, count: int, first_address: str) -> list[DemoHost]:
    """Describe ``count`` hosts with consecutive addresses from ``first_address``."""
    first = ipaddress.IPv4Address(first_address)
    hosts = []
    for index in range(1, count + 1):
        name = f"gs-{index:02d}"
        hosts.append(DemoHost(
            index=index,
            name=name,
            address=str(first + index - 1),
            root=state_dir / "hosts" / name,
            host_key_path=state_dir / "host_keys" / name,
        ))
    return hosts
