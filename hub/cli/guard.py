"""`tre guard`: the guard on the browser channel (is it answering, what each workspace sent today)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hub.cli._common import console, print_json
from hub.cli._registry import JsonOption, cli_settings, parse_when, registry_session

app = typer.Typer(help="The guard between browsers and workspaces.", no_args_is_help=True)


@app.command()
def status(as_json: Annotated[bool, JsonOption] = False) -> None:
    """Is the guard answering (exit 1 if not: no workspace can start then)?"""
    import httpx

    settings = cli_settings()
    url = f"http://127.0.0.1:{settings.guard_port}/_guard/health"
    try:
        answer = httpx.get(url, timeout=3).json()
    except (httpx.HTTPError, ValueError) as exc:
        answer = {"ok": False, "error": str(exc)}
    if as_json:
        print_json({"url": url, **answer})
    elif answer.get("ok"):
        recording = "recording" if answer.get("recording") else "[red]NOT recording (database?)[/]"
        console.print(f"[green]ok[/] the guard answers on {url}, {recording}")
    else:
        console.print(f"[red]down[/] nothing answers on {url}: {answer.get('error')}", highlight=False)
    if not answer.get("ok"):
        raise SystemExit(1)


@app.command()
def usage(
    day: Annotated[str | None, typer.Option("--day", help="YYYY-MM-DD (UTC); default today.")] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Bytes each workspace sent to the browser on a day, against its allowance, and what was cut."""
    from hub.guard.store import usage_on
    from hub.kernel.clock import utcnow
    from hub.registry.access import project_limits
    from hub.registry.models import Project

    when = (parse_when(day, "--day") if day else utcnow()).date()
    with registry_session(readonly=True) as s:
        rows = []
        for u in usage_on(s, when):
            project = s.query(Project).filter_by(slug=u.project).one_or_none()
            allowance = project_limits(project).daily_bytes if project else None
            rows.append(
                {
                    "user": u.username,
                    "project": u.project,
                    "day": u.day.isoformat(),
                    "sent_bytes": u.sent_bytes,
                    "daily_bytes": allowance,
                    "cut": u.cut_count,
                }
            )
    if as_json:
        print_json(rows)
        return
    table = Table("user", "project", "sent", "allowance", "withheld", title=f"Sent to browsers on {when}")
    for r in rows:
        share = f" ({100 * r['sent_bytes'] / r['daily_bytes']:.0f}%)" if r["daily_bytes"] else ""
        table.add_row(
            r["user"],
            r["project"],
            f"{r['sent_bytes'] / 1e6:.1f} MB{share}",
            f"{(r['daily_bytes'] or 0) / 1e6:.0f} MB",
            str(r["cut"]) if r["cut"] else "",
        )
    console.print(table)
