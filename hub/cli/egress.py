"""`tre egress`: disclosure checks, release verification and the review service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Egress: disclosure checks and release verification.", no_args_is_help=True)


# --- tre egress check --------------------------------------------------------------------------


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    from hub.cli._common import console

    colour = {"pass": "green", "review": "yellow", "fail": "red"}
    table = Table("file", "verdict", "rule", "finding", show_lines=False)
    for entry in report["files"]:
        verdict = f"[{colour[entry['verdict']]}]{entry['verdict']}[/]"
        if not entry["findings"]:
            table.add_row(entry["path"], verdict, "", "")
        for i, f in enumerate(entry["findings"]):
            table.add_row(
                entry["path"] if i == 0 else "",
                verdict if i == 0 else "",
                f"[{colour[f['verdict']]}]{f['rule']}[/]",
                f["message"],
            )
    console.print(table)


@app.command("check")
def check_command(
    paths: list[Path] = typer.Argument(
        ..., help="Output files or folders (an ACRO bundle folder works too)."
    ),
    project: str | None = typer.Option(
        None, "--project", help="Use this project's settings, earlier outputs and pseudonyms."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON report document."),
    config: Path | None = typer.Option(None, "--config", help="JSON or TOML file of SDC rule settings."),
) -> None:
    """Run the disclosure checks on output files. Exits 0 whatever the verdicts."""
    import tempfile
    from dataclasses import asdict

    from egress.review.project_context import ProjectContext, project_context
    from egress.sdc import RuleConfig, check_paths
    from hub.cli._common import err_console, fail, print_json
    from hub.kernel.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="tre-sdc-") as scratch:
        found = project_context(get_settings(), project, Path(scratch)) if project else ProjectContext()
        if found.context.unavailable:
            err_console.print(f"[yellow]project context unavailable: {found.context.unavailable}[/]")
        try:
            rules: RuleConfig | None = None
            if config is not None:
                rules = RuleConfig.from_file(config)
            if found.overrides:
                rules = RuleConfig.from_dict({**(asdict(rules) if rules else {}), **found.overrides})
            report = check_paths(paths, config=rules, context=found.context)
        except FileNotFoundError as exc:
            fail(f"{exc}; give paths to existing output files")
        except (ValueError, OSError) as exc:
            fail(f"could not check: {exc}")
    if json_out:
        print_json(report)
    else:
        _print_report(report)


# --- tre egress verify / serve / rotate-key -----------------------------------------------------


@app.command()
def verify(
    bundle: Path = typer.Argument(..., help="A release bundle (.zip) downloaded from the egress service."),
    keyset: Path | None = typer.Option(
        None, "--keyset", help="Public keyset (JWKS) to trust; default: this TRE's keys/egress/keyset.json."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the verified decision record as JSON."),
    bag: Path | None = typer.Option(
        None,
        "--bag",
        help="Also write the verified release as a BagIt zip (its RO-Crate under data/), for a repository.",
    ),
) -> None:
    """Check a release bundle offline: the record's signature and every file's SHA-256."""
    from egress.review.bundle import verify_bundle
    from hub.cli._common import console, fail, print_json
    from hub.kernel.settings import get_settings
    from hub.kernel.signing import InvalidRecord, Signer, load_keyset

    keyset_path = keyset or Signer(get_settings().keys_dir).keyset_path
    if not keyset_path.is_file():
        fail(f"no keyset at {keyset_path}; pass --keyset with the egress service's public keyset.json")
    try:
        claims = verify_bundle(bundle, load_keyset(keyset_path))
    except (InvalidRecord, ValueError, OSError) as exc:
        fail(f"NOT VERIFIED: {exc}")
    if bag is not None:
        from egress.review.bundle import bag_bundle

        bag_bundle(bundle, bag)
        console.print(f"BagIt zip of the release (Five Safes RO-Crate in data/): {bag}")
    if json_out:
        print_json(claims)
        return
    console.print(
        f"[green]verified[/] request {claims['request']['id']} of project {claims['project']} "
        f"by {claims['author']}: {len(claims['files'])} file(s), reviewers {', '.join(claims['reviewers'])}"
    )
    for f in claims["files"]:
        console.print(f"  {f['sha256']}  {f['path']}")


@app.command()
def serve() -> None:
    """Run the egress review service (normally started by JupyterHub as the `egress` service)."""
    from egress.__main__ import main

    main()


@app.command("rotate-key")
def rotate_key() -> None:
    """Start signing release records with a new key; records signed before keep verifying."""
    from hub.cli._common import console
    from hub.kernel.settings import get_settings
    from hub.kernel.signing import Signer

    signer = Signer(get_settings().keys_dir)
    kid = signer.rotate()
    console.print(f"new signing key {kid}; public keyset: {signer.keyset_path}")
