"""`tre hub`: run the proxy, JupyterHub and its managed services."""

from __future__ import annotations

import dataclasses
import os
import sys

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
    from hub.cli._registry import registry_settings
    from hub.host import tls
    from hub.host.network import status
    from hub.workspaces import jupyterhub_config

    overrides = {"idle_timeout": idle_timeout, "max_age": max_age, "public_ip": public_ip}
    settings = dataclasses.replace(
        registry_settings(), **{k: v for k, v in overrides.items() if v is not None}
    )
    st = status(settings)
    if not st.ok:
        fail(
            "the workspace network is not in place (" + "; ".join(st.problems) + "); run `tre network setup`"
        )
    problems = tls.check(settings)
    if problems:
        fail("; ".join(problems))
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    p = st.plan
    console.print(
        f"hub API on {p.gateway}:{p.hub_port} (workspace bridge {p.bridge}); the TRE at "
        f"{settings.public_url} (proxy on {settings.public_ip}:{settings.public_port})",
        soft_wrap=True,
    )
    os.chdir(settings.state_dir)
    # exec, with exactly these settings: JupyterHub handles SIGTERM itself (stops workspaces, the proxy
    # and the services) and passes the settings on to the services it starts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")} | settings.to_env()
    argv = [sys.executable, "-m", "jupyterhub", "-f", jupyterhub_config.__file__]
    os.execve(sys.executable, argv, env)  # noqa: S606 - a fixed argv, no shell
