"""`tre grant`: a project's access to a dataset version (requested by the lead, decided by a custodian)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hub.cli._common import acting_user, console, print_json
from hub.cli._registry import (
    ActorOption,
    JsonOption,
    iso,
    one_line_errors,
    parse_pairs,
    parse_when,
    progress_bar,
    registry_session,
    registry_settings,
)

app = typer.Typer(help="Dataset grants: request, approve, reject, revoke, list.", no_args_is_help=True)

NoteOption = typer.Option("--note", help="Recorded with the grant and in the audit log.")


def grant_row(g) -> dict[str, Any]:
    from hub.registry.permissions import grant_is_active

    return {
        "id": g.id,
        "project": g.project.slug,
        "dataset": g.dataset.ref,
        "status": g.status,
        # Approved and not yet expired: what provisioning and workspaces go by.
        "active": grant_is_active(g.status, g.expires_at),
        "columns": g.columns,
        "pseudonymise": g.pseudonymise,
        "remove_opted_out": g.remove_opted_out,
        "age_bands": g.age_bands,
        "date_shift_days": g.date_shift_days,
        "expires_at": iso(g.expires_at),
        "requested_by": g.requested_by.username,
        "requested_at": iso(g.requested_at),
        "approved_by": g.approved_by.username if g.approved_by else None,
        "approved_at": iso(g.approved_at),
        "revoked_by": g.revoked_by.username if g.revoked_by else None,
        "revoked_at": iso(g.revoked_at),
        "note": g.note,
    }


def _show(row: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print_json(row)
    else:
        console.print(
            f"{verb} grant [bold]{row['id']}[/]: {row['project']} <- {row['dataset']} ({row['status']})"
        )


@app.command("request")
def request(
    project: Annotated[str, typer.Argument(help="Project slug.")],
    dataset: Annotated[str, typer.Argument(help="NAME (latest version) or NAME:VERSION.")],
    columns: Annotated[
        list[str], typer.Option("--columns", "-c", help="TABLE=COL1,COL2 or TABLE=*; repeat per table.")
    ],
    expires: Annotated[
        str | None, typer.Option("--expires", help="YYYY-MM-DD or +Nd (default: the project's expiry).")
    ] = None,
    keep_opted_out: Annotated[
        bool, typer.Option("--keep-opted-out", help="Do not remove opted-out patients (needs a legal basis).")
    ] = False,
    pseudonymise: Annotated[
        list[str] | None,
        typer.Option("--pseudonymise", help="[TABLE.]COLUMN to pseudonymise besides the identifier."),
    ] = None,
    age_bands: Annotated[
        bool, typer.Option("--age-bands", help="Release age bands instead of birth dates.")
    ] = False,
    date_shift_days: Annotated[
        int | None, typer.Option("--date-shift-days", help="Shift each person's dates by up to ±N days.")
    ] = None,
    note: Annotated[str, NoteOption] = "",
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Request a dataset for a project (the project lead)."""
    from hub import registry

    wanted = {
        table: [c.strip() for c in cols.split(",")]
        for table, cols in parse_pairs(columns, "--columns").items()
    }
    expires_at = parse_when(expires) if expires else None
    with registry_session() as s:
        grant = registry.request_grant(
            s,
            acting_user(actor),
            project,
            dataset,
            wanted,
            expires_at=expires_at,
            remove_opted_out=not keep_opted_out,
            pseudonymise=pseudonymise or [],
            age_bands=age_bands,
            date_shift_days=date_shift_days,
            note=note,
        )
        row = grant_row(grant)
    _show(row, as_json, "requested")


def _decide(grant_id: str, approve: bool, note: str, actor: str | None, as_json: bool) -> None:
    from hub import registry

    with registry_session() as s:
        row = grant_row(registry.decide_grant(s, acting_user(actor), grant_id, approve, note))
    _show(row, as_json, "approved" if approve else "rejected")


@app.command("approve")
def approve(
    grant_id: str,
    note: Annotated[str, NoteOption] = "",
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Approve a requested grant (administrators/custodians; never your own request or project)."""
    _decide(grant_id, True, note, actor, as_json)


@app.command("reject")
def reject(
    grant_id: str,
    note: Annotated[str, NoteOption] = "",
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Reject a requested grant."""
    _decide(grant_id, False, note, actor, as_json)


@app.command("revoke")
def revoke(
    grant_id: str,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")] = "",
    no_provision: Annotated[
        bool, typer.Option("--no-provision", help="Do not rebuild the release now (do it later yourself).")
    ] = False,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Revoke a grant and rebuild the project's release without that data."""
    from hub import registry
    from hub.cli.project import report_release, report_stopped
    from hub.enforcement import revoke_grant

    settings = registry_settings()
    with one_line_errors(), progress_bar(f"revoking {grant_id}") as step:
        withdrawal = revoke_grant(
            settings, acting_user(actor), grant_id, reason, rebuild=not no_provision, progress=step
        )
    with registry_session(readonly=True) as s:
        _show(grant_row(registry.get_grant(s, grant_id)), as_json, "revoked")
    if not as_json:
        report_stopped(withdrawal)
        report_release(withdrawal.project, withdrawal.release)


@app.command("list")
def list_grants(
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="requested|approved|rejected|revoked")
    ] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """List grants."""
    from sqlalchemy import select

    from hub import registry
    from hub.registry.models import Grant

    with registry_session(readonly=True) as s:
        query = select(Grant).order_by(Grant.requested_at)
        if project:
            query = query.where(Grant.project_id == registry.get_project(s, project).id)
        if status:
            query = query.where(Grant.status == status)
        rows = [grant_row(g) for g in s.execute(query).scalars()]
    if as_json:
        print_json(rows)
        return
    out = Table("grant", "project", "dataset", "status", "tables", "expires", "requested by", "decided by")
    for r in rows:
        out.add_row(
            r["id"],
            r["project"],
            r["dataset"],
            r["status"] + (" (expired)" if r["status"] == "approved" and not r["active"] else ""),
            ", ".join(r["columns"]),
            r["expires_at"][:10],
            r["requested_by"],
            r["approved_by"] or "-",
        )
    console.print(out)
