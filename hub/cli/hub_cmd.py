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
    """Run the proxy, JupyterHub and its services (egress, guard, sweeper, idle culler), restarting the
    hub if it dies; SIGTERM stops them all and leaves the workspaces running."""
    from hub.cli._registry import registry_settings
    from hub.host import tls
    from hub.host.network import status
    from hub.workspaces import jupyterhub_config
    from hub.workspaces.supervisor import Supervisor, ports_in_use

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
    p = st.plan
    taken = ports_in_use(settings, p.gateway)
    if taken:
        fail("; ".join(taken))
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    console.print(
        f"hub API on {p.gateway}:{p.hub_port} (workspace bridge {p.bridge}); the TRE at "
        f"{settings.public_url} (proxy on {settings.public_ip}:{settings.public_port})",
        soft_wrap=True,
    )
    # JupyterHub gets exactly these settings and passes them on to the services it starts. It runs
    # under a supervisor that starts it again if it dies; workspaces keep running meanwhile.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")} | settings.to_env()
    argv = [sys.executable, "-m", "jupyterhub", "-f", jupyterhub_config.__file__]
    supervisor = Supervisor(argv, env, settings.state_dir, say=lambda m: console.print(f"tre hub: {m}"))
    raise typer.Exit(supervisor.run())
