"""`tre audit`: verify the hash chain and read the log."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from hub.cli._common import console, err_console, print_json
from hub.cli._registry import JsonOption, parse_when, registry_session

app = typer.Typer(help="Audit log: verify the hash chain, show events.", no_args_is_help=True)


@app.command("verify")
def verify(as_json: Annotated[bool, JsonOption] = False) -> None:
    """Check that no audit event or code run was edited, deleted or reordered (exit 1 if one was)."""
    from hub.kernel import audit, codelog

    with registry_session(readonly=True) as s:
        result = audit.verify(s)
        code = codelog.verify(s)
    problems = result.problems + code.problems
    if as_json:
        print_json(
            {
                "ok": not problems,
                "events": result.count,
                "head": result.head,
                "code_runs": code.count,
                "code_head": code.head,
                "problems": problems,
            }
        )
    elif not problems:
        console.print(f"audit log intact: {result.count} events, head {result.head}")
        console.print(f"code log intact: {code.count} code runs, head {code.head}")
    else:
        for problem in problems:
            err_console.print(f"[bold red]tampered:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise SystemExit(1)


@app.command("code")
def code(
    user: Annotated[str | None, typer.Option("--user", help="Only code run by this user.")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Only in this project.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="YYYY-MM-DD or ISO time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="YYYY-MM-DD or ISO time.")] = None,
    grep: Annotated[str | None, typer.Option("--grep", help="Only code containing this text.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N runs.")] = 50,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Search the code log: every cell a browser sent a workspace kernel, as the guard saw it."""
    from hub.kernel import codelog

    with registry_session(readonly=True) as s:
        runs = codelog.search(
            s,
            username=user,
            project=project,
            since=parse_when(since, "--since") if since else None,
            until=parse_when(until, "--until") if until else None,
            contains=grep,
            limit=limit,
        )
        rows = [
            {
                "id": r.id,
                "time": r.time.isoformat(),
                "user": r.username,
                "project": r.project,
                "kernel": r.kernel_id,
                "kind": r.kind,
                "code": r.code,
                "code_sha256": r.code_sha256,
            }
            for r in runs
        ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no code runs match")
    for r in rows:
        console.rule(f"#{r['id']} {r['time'][:19]} {r['user']} in {r['project']} (kernel {r['kernel'][:8]})")
        console.print(r["code"], markup=False, highlight=False, soft_wrap=True)


@app.command("show")
def show(
    actor: Annotated[str | None, typer.Option("--actor", help="Only events by this user.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action, or a prefix ending in '.' (grant.).")
    ] = None,
    obj: Annotated[
        str | None, typer.Option("--object", help="TYPE or TYPE:ID, e.g. project:diab-study.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="YYYY-MM-DD or ISO time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="YYYY-MM-DD or ISO time (exclusive).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N events.")] = 50,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Show audit events, newest last."""
    from sqlalchemy import select

    from hub.kernel.audit import AuditEvent, event_dict

    query = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(
            AuditEvent.action.startswith(action, autoescape=True)
            if action.endswith(".")
            else AuditEvent.action == action
        )
    if obj:
        object_type, _, object_id = obj.partition(":")
        query = query.where(AuditEvent.object_type == object_type)
        if object_id:
            query = query.where(AuditEvent.object_id == object_id)
    if since:
        query = query.where(AuditEvent.time >= parse_when(since, "--since"))
    if until:
        query = query.where(AuditEvent.time < parse_when(until, "--until"))
    query = query.order_by(AuditEvent.id.desc()).limit(limit)
    with registry_session(readonly=True) as s:
        events = list(reversed(s.execute(query).scalars().all()))
        rows = [event_dict(e) for e in events]
    if as_json:
        print_json(rows)
        return
    out = Table("id", "time (UTC)", "actor", "action", "object", "details")
    for r in rows:
        details = json.dumps(r["details"], separators=(",", ":"), ensure_ascii=False)
        out.add_row(
            str(r["id"]),
            r["time"][:19],
            r["actor"],
            r["action"],
            f"{r['object_type']}:{r['object_id']}",
            details,
        )
    console.print(out)
