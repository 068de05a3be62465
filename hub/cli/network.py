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
def status(
    dns_probe: bool = typer.Option(
        True,
        "--dns-probe/--no-dns-probe",
        help="Also check from inside the network that no outside name resolves.",
    ),
) -> None:
    """Check the network and firewall are in place, and that no outside name resolves from the network
    (exit 1 if not: workspaces will not start, or DNS leaks out)."""
    from hub.host.network import dns_probe as probe_dns
    from hub.host.network import status as get_status

    settings = cli_settings()
    st = get_status(settings)
    p = st.plan
    console.print(
        f"network {p.name}, bridge {p.bridge}, subnet {p.subnet}, hub API {p.gateway}:{p.hub_port}",
        soft_wrap=True,
    )
    if not st.ok:
        for problem in st.problems:
            console.print(f"[red]problem[/] {problem}", highlight=False, soft_wrap=True)
        fail("the workspace network is not safe to use; run `tre network setup` as root")
    console.print("[green]ok[/] network and firewall in place")
    if not dns_probe:
        return
    found = probe_dns(settings)
    if found.leaks:
        fail(found.detail)
    mark = "[green]ok[/]" if found.checked else "[yellow]not checked[/]"
    console.print(f"{mark} DNS: {found.detail}", highlight=False, soft_wrap=True)


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
