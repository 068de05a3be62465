"""Settings for the classes JupyterHub builds itself (spawner, authenticators).

`jupyterhub_config.configure` hands the TRE's settings over as `c.WithTRESettings.tre_settings`;
every subclass reads that one config section. Without it (a bare `jupyterhub` run) they come from
the environment once, as `tre hub` set it.
"""

from __future__ import annotations

from traitlets import Instance, default
from traitlets.config import Configurable

from hub.kernel.settings import Settings, get_settings


class WithTRESettings(Configurable):
    tre_settings = Instance(Settings, config=True, help="The TRE's settings (hub.kernel.settings).")

    @default("tre_settings")
    def _settings_from_environment(self) -> Settings:
        return get_settings()
