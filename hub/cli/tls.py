"""`tre tls`: the certificate the proxy serves for the TRE's names."""

from __future__ import annotations

import typer

from hub.cli._common import console, fail, print_json
from hub.cli._registry import cli_settings

app = typer.Typer(
    help="TLS: the site's certificate, or a local CA for demos and tests.", no_args_is_help=True
)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check the certificate serves <domain> and *.<domain> and is not about to expire (exit 1 if not)."""
    from hub.host import tls

    settings = cli_settings()
    problems = tls.check(settings)
    try:
        found = tls.facts(settings)
    except (OSError, ValueError):  # missing or not PEM: check() says so
        found = None
    if as_json:
        print_json(
            {
                "cert": str(settings.tls_cert),
                "ok": not problems,
                "problems": problems,
                "names": list(found.names) if found else [],
                "not_after": found.not_after.isoformat() if found else None,
            }
        )
    if problems:
        if not as_json:
            for problem in problems:
                console.print(f"[red]problem[/] {problem}", highlight=False, soft_wrap=True)
        raise SystemExit(1)
    if not as_json and found:
        console.print(
            f"[green]ok[/] {settings.tls_cert}: {', '.join(found.names)} until {found.not_after:%Y-%m-%d}"
        )


@app.command()
def local() -> None:
    """Make a local CA and a certificate for the TRE's names (demo and test TREs only)."""
    from hub.host import tls

    settings = cli_settings()
    try:
        ca = tls.local_certificate(settings)
    except tls.TLSError as exc:
        fail(str(exc))
    found = tls.facts(settings)
    console.print(f"[green]ok[/] {settings.tls_cert}: {', '.join(found.names)}; trust {ca} in your browser")
