"""`tre project`: projects (the "data permit"), their members, checkers, limits and data release."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hub.cli._common import acting_user, console, fail, print_json
from hub.cli._registry import (
    ActorOption,
    JsonOption,
    iso,
    one_line_errors,
    parse_when,
    progress_bar,
    registry_session,
    registry_settings,
)

if TYPE_CHECKING:
    from hub.enforcement import Withdrawal
    from hub.provisioning import ReleaseResult

app = typer.Typer(
    help="Projects: create, members, checkers, limits, status, provisioning.", no_args_is_help=True
)
member_app = typer.Typer(help="Researchers of a project (managed by its lead).", no_args_is_help=True)
checker_app = typer.Typer(
    help="Output checkers of a project (managed by admins/custodians).", no_args_is_help=True
)
app.add_typer(member_app, name="member")
app.add_typer(checker_app, name="checker")


def project_row(project) -> dict[str, Any]:
    from hub.registry.access import project_limits
    from hub.registry.permissions import grant_is_active, project_is_open
    from hub.registry.vocabulary import Role

    members: dict[str, list[str]] = {role.value: [] for role in Role}
    for m in sorted(project.memberships, key=lambda m: m.user.username):
        members[m.role].append(m.user.username)
    limits = project_limits(project)
    return {
        "slug": project.slug,
        "title": project.title,
        "purpose": project.purpose,
        "lead": project.lead.username,
        "status": project.status,
        # Active and not yet expired: the only state that gives access to anything.
        "open": project_is_open(project.status, project.expires_at),
        "created_at": iso(project.created_at),
        "expires_at": iso(project.expires_at),
        "limits": dataclasses.asdict(limits),
        "limits_override": project.limits,
        "members": members,
        "grants": [
            {
                "id": g.id,
                "dataset": g.dataset.ref,
                "status": g.status,
                "active": grant_is_active(g.status, g.expires_at),
                "expires_at": iso(g.expires_at),
            }
            for g in sorted(project.grants, key=lambda g: g.requested_at)
        ],
    }


@app.command("create")
def create(
    slug: Annotated[str, typer.Argument(help="Project name (lowercase slug).")],
    title: Annotated[str, typer.Option("--title", help="Human-readable title.")],
    lead: Annotated[str, typer.Option("--lead", help="Registry user who leads the project.")],
    expires: Annotated[str, typer.Option("--expires", help="YYYY-MM-DD or +Nd: when all access ends.")],
    purpose: Annotated[str, typer.Option("--purpose", help="The approved research purpose.")] = "",
    mem: Annotated[str | None, typer.Option("--mem", help="Workspace memory limit, e.g. 4g.")] = None,
    cpu: Annotated[float | None, typer.Option("--cpu", help="Workspace CPU cores.")] = None,
    pids: Annotated[int | None, typer.Option("--pids", help="Workspace process limit.")] = None,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Create a project (administrators only) with its lead and expiry date."""
    from hub import registry

    expires_at = parse_when(expires)
    with registry_session() as s:
        project = registry.create_project(
            s,
            acting_user(actor),
            slug,
            title,
            lead,
            expires_at,
            purpose=purpose,
            limits={"mem": mem, "cpu": cpu, "pids": pids},
        )
        s.refresh(project)
        row = project_row(project)
    if as_json:
        print_json(row)
    else:
        console.print(f"created project [bold]{slug}[/] led by {lead}, expires {row['expires_at'][:10]}")


@app.command("list")
def list_projects(as_json: Annotated[bool, JsonOption] = False) -> None:
    """List projects."""
    from sqlalchemy import select

    from hub.registry.models import Project

    with registry_session(readonly=True) as s:
        rows = [project_row(p) for p in s.execute(select(Project).order_by(Project.slug)).scalars()]
    if as_json:
        print_json(rows)
        return
    out = Table("project", "title", "lead", "status", "expires", "researchers", "grants")
    for r in rows:
        active = sum(g["active"] for g in r["grants"])
        out.add_row(
            r["slug"],
            r["title"],
            r["lead"],
            r["status"] if r["open"] or r["status"] != "active" else "expired",
            r["expires_at"][:10],
            str(len(r["members"]["researcher"])),
            f"{active} active / {len(r['grants'])}",
        )
    console.print(out)


@app.command("show")
def show(slug: str, as_json: Annotated[bool, JsonOption] = False) -> None:
    """Show a project: members, checkers, grants, limits."""
    from hub import registry

    with registry_session(readonly=True) as s:
        row = project_row(registry.get_project(s, slug))
    if as_json:
        print_json(row)
        return
    console.print(
        f"[bold]{row['slug']}[/] {row['title']} ({row['status']}, expires {row['expires_at'][:10]})"
    )
    if row["purpose"]:
        console.print(f"purpose: {row['purpose']}")
    for role, users in row["members"].items():
        console.print(f"{role}s: {', '.join(users) or '-'}")
    lim = row["limits"]
    console.print(f"limits: mem {lim['mem']}, cpu {lim['cpu']}, pids {lim['pids']}")
    out = Table("grant", "dataset", "status", "expires")
    for g in row["grants"]:
        out.add_row(g["id"], g["dataset"], g["status"], g["expires_at"][:10])
    console.print(out)


def report_release(slug: str, release: ReleaseResult | None) -> None:
    if release is not None:
        console.print(f"provisioned {slug}: release {release.release} is current", highlight=False)


@app.command("provision")
def provision(slug: str, actor: Annotated[str | None, ActorOption] = None) -> None:
    """Build and publish the project's data release from its approved grants."""
    from hub.provisioning import provision_project

    settings = registry_settings()
    with one_line_errors(), progress_bar(f"provisioning {slug}") as step:
        result = provision_project(settings, slug, acting_user(actor), progress=step)
    report_release(slug, result)


def _show_project(slug: str, as_json: bool) -> None:
    from hub import registry

    with registry_session(readonly=True) as s:
        row = project_row(registry.get_project(s, slug))
    if as_json:
        print_json(row)
    else:
        console.print(f"project [bold]{slug}[/] is now {row['status']}")


def report_stopped(withdrawal: Withdrawal) -> None:
    for w in withdrawal.stopped:
        console.print(
            f"stopped {w.user}'s workspace of {w.project}: {w.reason}", highlight=False, soft_wrap=True
        )
    if withdrawal.purged_homes:
        console.print(f"deleted the project homes of {', '.join(withdrawal.purged_homes)}", highlight=False)


def _status(slug: str, change: str, reason: str, actor: str | None, as_json: bool) -> None:
    from hub import registry
    from hub.enforcement import suspend_project

    if change == "suspend":  # running workspaces stop at once
        settings = registry_settings()
        with one_line_errors():
            withdrawal = suspend_project(settings, acting_user(actor), slug, reason)
    else:
        with registry_session() as s:
            registry.change_project_status(s, acting_user(actor), slug, change, reason)
    _show_project(slug, as_json)
    if change == "suspend" and not as_json:
        report_stopped(withdrawal)


ReasonOption = typer.Option("--reason", help="Why (recorded in the audit log).")


@app.command("suspend")
def suspend(
    slug: str,
    reason: Annotated[str, ReasonOption] = "",
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Suspend a project: no workspace opens until it is resumed."""
    _status(slug, "suspend", reason, actor, as_json)


@app.command("resume")
def resume(
    slug: str,
    reason: Annotated[str, ReasonOption] = "",
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Resume a suspended project."""
    _status(slug, "resume", reason, actor, as_json)


@app.command("close")
def close(
    slug: str,
    reason: Annotated[str, ReasonOption] = "",
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Close a project for good and remove its released data."""
    from hub.enforcement import close_project

    settings = registry_settings()
    with one_line_errors(), progress_bar(f"closing {slug}") as step:
        withdrawal = close_project(settings, acting_user(actor), slug, reason, progress=step)
    _show_project(slug, as_json)
    if not as_json:
        report_stopped(withdrawal)
        report_release(slug, withdrawal.release)


@app.command("set-limits")
def set_limits(
    slug: str,
    mem: Annotated[str | None, typer.Option("--mem", help="Memory, e.g. 4g.")] = None,
    cpu: Annotated[float | None, typer.Option("--cpu", help="CPU cores.")] = None,
    pids: Annotated[int | None, typer.Option("--pids", help="Process limit.")] = None,
    read_bytes: Annotated[
        int | None, typer.Option("--read-bytes", help="Largest file the browser may read (bytes).")
    ] = None,
    daily_bytes: Annotated[
        int | None,
        typer.Option("--daily-bytes", help="Bytes per user per UTC day the workspace may send the browser."),
    ] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Jobs of the project running at once.")] = None,
    job_seconds: Annotated[int | None, typer.Option("--job-seconds", help="A job's time limit.")] = None,
    rerun_seconds: Annotated[
        int | None, typer.Option("--rerun-seconds", help="A re-run's time limit (default TRE_RERUN_SECONDS).")
    ] = None,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Override the workspace limits of a project: resources and the guard's (administrators only)."""
    from hub import registry

    with registry_session() as s:
        row = project_row(
            registry.set_project_limits(
                s,
                acting_user(actor),
                slug,
                mem=mem,
                cpu=cpu,
                pids=pids,
                read_bytes=read_bytes,
                daily_bytes=daily_bytes,
                jobs=jobs,
                job_seconds=job_seconds,
                rerun_seconds=rerun_seconds,
            )
        )
    if as_json:
        print_json(row)
    else:
        lim = row["limits"]
        console.print(
            f"{slug} limits: mem {lim['mem']}, cpu {lim['cpu']}, pids {lim['pids']}, "
            f"browser reads up to {lim['read_bytes']} bytes, {lim['daily_bytes']} bytes a day, "
            f"{lim['jobs']} jobs at once of up to {lim['job_seconds']} s"
        )


def _sdc_value(text: str) -> Any:
    """`15` -> 15, `92.5` -> 92.5, `false` -> False, `10,5` -> [10, 5]; anything else stays text."""
    import json

    if "," in text:
        return [_sdc_value(part) for part in text.split(",")]
    try:
        return json.loads(text)
    except ValueError:
        return text


@app.command("reproduction")
def reproduction(
    slug: str,
    required: Annotated[
        bool,
        typer.Option(
            "--required/--not-required", help="Require outputs reproduced by a re-run before release."
        ),
    ],
    actor: Annotated[str | None, ActorOption] = None,
) -> None:
    """Require that a re-run of the request's notebook reproduces each output before it is released
    (administrators; audited). An output no re-run reproduced needs both checkers' override."""
    from hub import registry

    with registry_session() as s:
        registry.set_reproduction_rule(s, acting_user(actor), slug, required)
    state = "now requires" if required else "no longer requires"
    console.print(f"{slug} {state} outputs reproduced by a re-run before release")


@app.command("sdc-rules")
def sdc_rules(
    slug: str,
    assignments: Annotated[
        list[str] | None,
        typer.Option("--set", help="A rule setting as NAME=VALUE, e.g. threshold=15 (repeatable)."),
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Drop earlier overrides first.")] = False,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Show or override the disclosure-check rules of a project (administrators override).

    The egress service and `tre egress check --project` use them for every file of the project.
    """
    import dataclasses

    from egress.sdc import RuleConfig
    from hub import registry

    overrides: dict[str, Any] = {}
    for item in assignments or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--set takes NAME=VALUE, not {item!r} (e.g. --set threshold=15)")
        overrides[name.strip()] = _sdc_value(value.strip())
    if overrides or reset:
        with registry_session() as s:
            project = registry.set_project_sdc_rules(s, acting_user(actor), slug, overrides, reset=reset)
            custom = dict(project.sdc_config or {})
    else:
        with registry_session(readonly=True) as s:
            custom = dict(registry.get_project(s, slug).sdc_config or {})
    effective = dataclasses.asdict(RuleConfig.from_dict(custom))
    if as_json:
        print_json({"project": slug, "overrides": custom, "rules": effective})
        return
    for name, value in effective.items():
        mark = "  [yellow](project override)[/]" if name in custom else ""
        console.print(f"{name} = {value}{mark}", highlight=False)


def _membership(slug: str, username: str, role: str, add: bool, actor: str | None, as_json: bool) -> None:
    from hub import registry
    from hub.enforcement import remove_member

    if add:
        with registry_session() as s:
            registry.add_member(s, acting_user(actor), slug, username, role)
    else:  # the removed member's running workspace stops at once
        settings = registry_settings()
        with one_line_errors():
            withdrawal = remove_member(settings, acting_user(actor), slug, username, role)
    if as_json:
        print_json({"project": slug, "user": username, "role": role, "member": add})
    else:
        console.print(f"{'added' if add else 'removed'} {role} {username} {'to' if add else 'from'} {slug}")
        if not add:
            report_stopped(withdrawal)


@member_app.command("add")
def member_add(
    slug: str,
    username: str,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Add a researcher (the project lead or an administrator)."""
    _membership(slug, username, "researcher", True, actor, as_json)


@member_app.command("remove")
def member_remove(
    slug: str,
    username: str,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Remove a researcher."""
    _membership(slug, username, "researcher", False, actor, as_json)


@checker_app.command("assign")
def checker_assign(
    slug: str,
    username: str,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Assign an output checker (administrators and custodians only)."""
    _membership(slug, username, "checker", True, actor, as_json)


@checker_app.command("remove")
def checker_remove(
    slug: str,
    username: str,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Remove an output checker."""
    _membership(slug, username, "checker", False, actor, as_json)
