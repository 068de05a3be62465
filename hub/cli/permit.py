"""`tre permit`: data permits, listed, exported and checked offline.

Permits are issued in the portal when a custodian approves an application; these commands are for
automation and for anyone holding a permit file who wants to know it is genuine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.cli._common import console, fail, print_json
from hub.cli._registry import registry_session

app = typer.Typer(help="Data permits: list, export and verify offline.", no_args_is_help=True)


@app.command("list")
def list_permits(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every permit issued, newest first."""
    from sqlalchemy import select

    from hub.registry.models import Permit

    with registry_session(readonly=True) as s:
        rows = [
            {
                "id": p.id,
                "project": p.claims.get("project"),
                "status": p.status,
                "issued_by": p.claims.get("issued_by"),
                "issued_at": p.issued_at.isoformat(),
                "expires_at": p.expires_at.isoformat(),
                "datasets": [d["dataset"] for d in p.claims.get("datasets", [])],
            }
            for p in s.execute(select(Permit).order_by(Permit.issued_at.desc())).scalars()
        ]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        console.print(
            f"{r['id']}  {r['project']:<20} {r['status']:<10} until {r['expires_at'][:10]}  "
            f"{', '.join(r['datasets'])}"
        )


@app.command("export")
def export(permit_id: str) -> None:
    """Print a permit's signed record (a JWT), to keep or to hand to someone who checks it."""
    from hub.registry.models import Permit, is_opaque_id

    with registry_session(readonly=True) as s:
        permit = s.get(Permit, permit_id) if is_opaque_id(permit_id, "p") else None
        if permit is None:
            fail(f"no permit {permit_id!r}; see `tre permit list`")
        typer.echo(permit.token)


@app.command("verify")
def verify(
    record: Annotated[
        Path, typer.Argument(help="A permit file (its signed record); - reads standard input.")
    ],
    keyset: Annotated[
        Path | None,
        typer.Option(help="Public keyset (JWKS) to trust; default: this TRE's keys/permits/keyset.json."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the verified permit as JSON.")] = False,
) -> None:
    """Check a permit offline: its signature, issuer, audience and validity."""
    from hub.kernel.settings import get_settings
    from hub.kernel.signing import PERMITS, InvalidRecord, Signer, load_keyset, verify_record

    keyset_path = keyset or Signer(get_settings().keys_dir, PERMITS).keyset_path
    if not keyset_path.is_file():
        fail(f"no keyset at {keyset_path}; pass --keyset with the portal's public permit keyset")
    try:
        token = (sys.stdin.read() if str(record) == "-" else record.read_text()).strip()
        claims = verify_record(token, load_keyset(keyset_path), PERMITS)
    except (InvalidRecord, ValueError, OSError) as exc:
        fail(f"NOT VERIFIED: {exc}")
    if json_out:
        print_json(claims)
        return
    console.print(
        f"[green]verified[/] permit {claims['permit']} for project {claims['project']} "
        f"(lead {claims['holder']}), issued by {claims['issued_by']}, "
        f"valid until {claims['valid_until'][:10]}"
    )
    for d in claims["datasets"]:
        cols = "; ".join(f"{t}: {', '.join(c)}" for t, c in d["columns"].items())
        console.print(f"  {d['dataset']}  {cols}")


@app.command("rotate-key")
def rotate_key() -> None:
    """Start signing permits with a new key; permits signed before keep verifying."""
    from hub.kernel.settings import get_settings
    from hub.kernel.signing import PERMITS, Signer

    signer = Signer(get_settings().keys_dir, PERMITS)
    kid = signer.rotate()
    console.print(f"new permit signing key {kid}; public keyset: {signer.keyset_path}")
