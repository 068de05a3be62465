"""`tre network`: the workspace network and its host firewall (needs root)."""

from __future__ import annotations

import typer

from hub.cli._common import console, fail
from hub.cli._registry import cli_settings

app = typer.Typer(help="The isolated workspace network and its host firewall.", no_args_is_help=True)


@app.command()
def setup() -> None:
    """Create (or repair) the internal workspace network and the firewall rules; safe to re-run."""
    from hub.host.network import NetworkError
    from hub.host.network import setup as do_setup

    try:
        lines = do_setup(cli_settings())
    except NetworkError as exc:
        fail(str(exc))
    for line in lines:
        console.print(f"[green]ok[/] {line}", highlight=False, soft_wrap=True)
    console.print("Workspaces can reach only the hub API; nothing else on the host, nothing outside.")


@app.command()
def status() -> None:
    """Check the network and firewall are in place (exit 1 if not: workspaces will not start)."""
    from hub.host.network import status as get_status

    st = get_status(cli_settings())
    p = st.plan
    console.print(
        f"network {p.name}, bridge {p.bridge}, subnet {p.subnet}, hub API {p.gateway}:{p.hub_port}",
        soft_wrap=True,
    )
    if st.ok:
        console.print("[green]ok[/] network and firewall in place")
        return
    for problem in st.problems:
        console.print(f"[red]problem[/] {problem}", highlight=False, soft_wrap=True)
    fail("the workspace network is not safe to use; run `tre network setup` as root")


@app.command()
def teardown() -> None:
    """Remove the firewall rules and the network (stop all workspaces first)."""
    from hub.host.network import NetworkError
    from hub.host.network import teardown as do_teardown

    try:
        lines = do_teardown(cli_settings())
    except NetworkError as exc:
        fail(str(exc))
    for line in lines:
        console.print(f"[green]ok[/] {line}", highlight=False, soft_wrap=True)
    if not lines:
        console.print("nothing to remove")
