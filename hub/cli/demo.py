"""`tre demo`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hub.cli.images import RichReporter
from hub.demo.stack import Account, DemoProgress
from hub.kernel.settings import Settings

if TYPE_CHECKING:
    from hub.workspaces.hub_process import HubProcess

app = typer.Typer(help="Demos.", no_args_is_help=True)


@app.command("data")
def data(
    out: Path = typer.Option(..., "--out", help="Folder to write the datasets into (created)."),
    patients: int = typer.Option(10_000, "--patients", min=1, help="Diabetes cohort size."),
    seed: int = typer.Option(0, "--seed", help="Same seed and size give the same data."),
    csv: bool = typer.Option(False, "--csv", help="Also write a CSV copy of every table."),
    as_json: bool = typer.Option(False, "--json", help="Print row counts as JSON."),
) -> None:
    """Generate synthetic diabetes, oncology and opt-out datasets (layout: hub/demo/data.py)."""
    from hub.cli._common import console, fail, print_json
    from hub.demo.data import generate

    try:
        with console.status(f"generating {patients:,} patients…", spinner="dots"):
            result = generate(out, patients=patients, seed=seed, csv=csv)
    except OSError as exc:
        fail(f"cannot write demo data to {out}: {exc.strerror or exc}; choose a writable --out folder")
    if as_json:
        print_json({"out": str(result.out_dir), "seed": seed, "patients": patients, "rows": result.rows})
        return
    for dataset, tables in result.rows.items():
        for table, rows in tables.items():
            console.print(f"{dataset + '/' + table + '.parquet':<32}{rows:>12,} rows")
    console.print(f"{result.total_rows:,} rows in {result.out_dir}")


@app.command("run")
def run(
    patients: int = typer.Option(100_000, "--patients", min=100, help="Diabetes cohort size."),
    seed: int = typer.Option(0, "--seed", help="Same seed and size give the same data."),
    root: Path = typer.Option(
        Path("var/demo"), "--root", help="Folder for the demo's state and data (never /srv/tre)."
    ),
    reset: bool = typer.Option(False, "--reset", help="Delete the demo's folder first and start over."),
) -> None:
    """Build (or reuse) the whole demo TRE, start it, print the accounts; Ctrl-C stops everything."""
    import dataclasses
    import os
    import signal

    from hub.cli._common import console, fail
    from hub.demo.stack import DemoError, prepare
    from hub.demo.stack import reset as reset_demo
    from hub.workspaces.hub_process import HubProcess, HubStartError

    if os.geteuid() != 0:
        fail("the demo needs root (Docker, iptables for the workspace firewall); run it with sudo")
    # The demo's own ports unless the environment sets them: https on 8443, http 8080 redirects.
    environ = {"TRE_PUBLIC_PORT": "8443", "TRE_HTTP_PORT": "8080", **os.environ}
    settings = dataclasses.replace(Settings.from_env(environ), root=root.resolve())
    started = time.monotonic()
    if reset:
        with console.status(f"removing {settings.root}…"):
            reset_demo(settings)
    # Ctrl-C, a closed terminal or a kill all end in the same clean-up below (SIGINT too: a shell
    # that starts us in the background leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    hub = HubProcess(settings)
    progress = _RichProgress()
    try:
        accounts = prepare(settings, patients=patients, seed=seed, progress=progress)
        with progress.step("Starting proxy, hub, egress service and idle culler"):
            hub.start()
        ready = time.monotonic() - started
        _print_accounts(settings, accounts, ready, hub.log)
        _keep_running(hub)
    except (DemoError, HubStartError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("\n[bold]Stopping[/] the hub, proxy, services and every workspace…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        progress.close()
        hub.stop()
        console.print("[green]✓[/] stopped; nothing left running.")


RESTARTS_ALLOWED = 3  # within RESTART_WINDOW seconds; then the demo stops, something is broken
RESTART_WINDOW = 300


def _keep_running(hub: HubProcess) -> None:
    """`tre hub` restarts JupyterHub itself; should `tre hub` die, start it again (workspaces kept)."""
    from hub.cli._common import console, fail

    restarts: list[float] = []
    while True:
        while hub.alive():
            time.sleep(1)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
        if len(restarts) > RESTARTS_ALLOWED:
            fail(f"tre hub stopped {len(restarts)} times in {RESTART_WINDOW}s; see {hub.log}:\n{hub.tail()}")
        console.print(f"[yellow]tre hub stopped unexpectedly; starting it again[/] (log: {hub.log})")
        hub.stop(keep_workspaces=True)  # whatever it left behind, but not the researchers' workspaces
        hub.start()


class _RichProgress(DemoProgress):
    """hub.demo.stack.DemoProgress with a spinner per step and the image build's own Rich reporter."""

    def __init__(self) -> None:
        self._reporter: RichReporter | None = None

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        from hub.cli._common import console

        started = time.monotonic()
        with console.status(f"[bold]{title}[/]…", spinner="dots"):
            yield
        console.print(f"[green]✓[/] [bold]{title}[/] [dim]({time.monotonic() - started:.1f}s)[/]")

    def note(self, message: str) -> None:
        from hub.cli._common import console

        console.print(f"  [dim]{message}[/]", highlight=False)

    def image_reporter(self) -> RichReporter:  # type: ignore[override]  # same methods, Rich output
        self._reporter = RichReporter()
        return self._reporter

    def close(self) -> None:
        if self._reporter is not None:
            self._reporter.close()


def _qr(text: str) -> str:
    import io

    import qrcode

    qr = qrcode.QRCode(border=1)
    qr.add_data(text)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def _print_accounts(settings: Settings, accounts: list[Account], ready_seconds: float, log: Path) -> None:
    from rich.table import Table

    from hub.cli._common import console
    from hub.host.tls import ca_path

    table = Table(title="Demo accounts (log in with the password and a code from the TOTP secret)")
    for column in ("user", "password", "TOTP secret", "role"):
        table.add_column(column, no_wrap=column != "role")
    for a in accounts:
        table.add_row(a.username, a.password, a.totp_secret, a.role)
    for a in accounts:
        console.print(f"\n[bold]{a.username}[/] ({a.role}): scan with an authenticator app")
        console.print(_qr(a.totp_uri()), highlight=False, markup=False, end="")
    console.print(table)
    console.print(
        f"\n[bold green]TRE ready in {ready_seconds:.0f}s[/] at [bold]{settings.public_url}[/]  "
        f"(hub log: {log})\n"
        f"The egress service is at {settings.service_url('egress')}; each workspace has an origin of "
        "its own. Browsers resolve *.localhost themselves.\n"
        f"The demo's certificate comes from a local CA: trust {ca_path(settings)} in your browser "
        "(Chromium: Settings > Privacy and security > Manage certificates > Authorities > Import), or "
        "accept the warning once per name.\n"
        "Press Ctrl-C to stop the hub, the proxy, the services and every workspace.",
        soft_wrap=True,
    )
