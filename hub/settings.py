"""One settings object for the whole control plane, read from environment variables.

Every path hangs off TRE_ROOT (default /srv/tre; the demo and the tests use a local folder), so a
deployment moves by changing one variable. Secrets are never stored here: see hub.secrets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    root: Path = field(default_factory=lambda: Path(_env("TRE_ROOT", "/srv/tre")))
    db_url_override: str | None = field(default_factory=lambda: os.environ.get("TRE_DB_URL"))
    # Name of the notebook image the spawner runs (built by `tre images build`, never pulled).
    image: str = field(default_factory=lambda: _env("TRE_IMAGE", "tre-notebook:latest"))
    # Dedicated internal Docker network for workspaces, and its fixed Linux bridge name.
    network: str = field(default_factory=lambda: _env("TRE_NETWORK", "tre-workspaces"))
    bridge: str = field(default_factory=lambda: _env("TRE_BRIDGE", "br-tre"))
    subnet: str = field(default_factory=lambda: _env("TRE_SUBNET", "172.31.240.0/24"))
    hub_port: int = field(default_factory=lambda: int(_env("TRE_HUB_PORT", "8081")))
    public_port: int = field(default_factory=lambda: int(_env("TRE_PUBLIC_PORT", "8000")))
    egress_port: int = field(default_factory=lambda: int(_env("TRE_EGRESS_PORT", "8090")))
    releases_to_keep: int = field(default_factory=lambda: int(_env("TRE_RELEASES_TO_KEEP", "2")))
    egress_max_file_bytes: int = field(
        default_factory=lambda: int(_env("TRE_EGRESS_MAX_FILE_BYTES", str(100 * 1024 * 1024)))
    )

    @cached_property
    def state_dir(self) -> Path:
        return self.root / "state"

    @cached_property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @cached_property
    def projects_dir(self) -> Path:
        return self.root / "projects"

    @cached_property
    def homes_dir(self) -> Path:
        return self.root / "homes"

    @cached_property
    def egress_dir(self) -> Path:
        return self.root / "egress"

    @cached_property
    def db_url(self) -> str:
        return self.db_url_override or f"sqlite:///{self.state_dir / 'tre.sqlite'}"

    def project_dir(self, slug: str) -> Path:
        return self.projects_dir / slug

    def current_release(self, slug: str) -> Path:
        """The published release of a project (a symlink `current -> releases/<n>`)."""
        return self.projects_dir / slug / "current"

    def home_dir(self, slug: str, username: str) -> Path:
        return self.homes_dir / slug / username


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; tests change TRE_ROOT between cases)."""
    return Settings()
