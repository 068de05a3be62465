"""`tre hub`: run the proxy, JupyterHub and its managed services."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from hub.cli._common import console, fail


def hub(
    idle_timeout: int = typer.Option(
        None, help="Stop workspaces idle for this many seconds (default 3600; env TRE_IDLE_TIMEOUT)."
    ),
    max_age: int = typer.Option(
        None, help="Stop workspaces older than this many seconds, busy or not (0 = never; env TRE_MAX_AGE)."
    ),
    public_ip: str = typer.Option(
        None, help="Address of the public port (default 127.0.0.1; env TRE_PUBLIC_IP)."
    ),
) -> None:
    """Start configurable-http-proxy, JupyterHub and the managed services (egress, idle culler)."""
    from hub.network import status
    from hub.settings import get_settings

    settings = get_settings()
    overrides = {"TRE_IDLE_TIMEOUT": idle_timeout, "TRE_MAX_AGE": max_age, "TRE_PUBLIC_IP": public_ip}
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    st = status(settings)
    if not st.ok:
        fail(
            "the workspace network is not in place (" + "; ".join(st.problems) + "); run `tre network setup`"
        )
    try:
        from hub.db import upgrade

        upgrade(settings)
    except ImportError:  # registry not installed in this checkout yet
        pass
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = Path(__file__).resolve().parent.parent / "jupyterhub_config.py"
    p = st.plan
    console.print(
        f"hub API on {p.gateway}:{p.hub_port} (workspace bridge {p.bridge}), "
        f"public proxy on {os.environ.get('TRE_PUBLIC_IP', '127.0.0.1')}:{settings.public_port}",
        soft_wrap=True,
    )
    os.chdir(settings.state_dir)
    # exec: JupyterHub handles SIGTERM itself (stops workspaces, the proxy and the services).
    argv = [sys.executable, "-m", "jupyterhub", "-f", str(config)]
    os.execv(sys.executable, argv)  # noqa: S606 - a fixed argv, no shell
