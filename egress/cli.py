"""`tre egress`: disclosure checks, release verification and the review service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from egress.sdc import CheckContext, RuleConfig

app = typer.Typer(help="Egress: disclosure checks and release verification.", no_args_is_help=True)


# --- tre egress check --------------------------------------------------------------------------
def _project_settings(project: str) -> tuple[dict[str, Any], CheckContext | None]:
    """A project's SDC overrides and check context from the registry, when it can tell us.

    The registry may not be set up (or not know the project); the check then runs with defaults.
    """
    from egress.sdc import CheckContext

    try:
        from hub.db import session_scope
        from hub.models import Project

        with session_scope() as session:
            row = session.query(Project).filter_by(slug=project).one_or_none()
            overrides = dict(getattr(row, "sdc_config", None) or {})
    except Exception as exc:  # registry missing, not migrated, or no such column yet
        from hub.cli._common import err_console

        err_console.print(
            f"[dim]note: project settings unavailable ({exc.__class__.__name__}); using defaults[/]"
        )
        return {}, None
    return overrides, CheckContext()


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


@app.command()
def check(
    paths: list[Path] = typer.Argument(
        ..., help="Output files or folders (an ACRO bundle folder works too)."
    ),
    project: str | None = typer.Option(None, "--project", help="Use this project's SDC settings."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON report document."),
    config: Path | None = typer.Option(None, "--config", help="JSON or TOML file of SDC rule settings."),
) -> None:
    """Run the disclosure checks on output files. Exits 0 whatever the verdicts."""
    from dataclasses import asdict

    from egress.sdc import RuleConfig, check_paths
    from hub.cli._common import fail, print_json

    overrides, context = _project_settings(project) if project else ({}, None)
    try:
        rules: RuleConfig | None = None
        if config is not None:
            rules = RuleConfig.from_file(config)
        if overrides:
            rules = RuleConfig.from_dict({**(asdict(rules) if rules else {}), **overrides})
        report = check_paths(paths, config=rules, context=context)
    except FileNotFoundError as exc:
        fail(f"{exc}; give paths to existing output files")
    except (ValueError, OSError) as exc:
        fail(f"could not check: {exc}")
    if json_out:
        print_json(report)
    else:
        _print_report(report)


# --- end of tre egress check -------------------------------------------------------------------
