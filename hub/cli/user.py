"""`tre user`: registry users and their global roles (administrator, data custodian).

Passwords and second factors live in the hub's authenticator; this only manages who exists in the
registry and what they may do.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hub.cli._common import acting_user, console, print_json
from hub.cli._registry import ActorOption, JsonOption, iso, registry_session

app = typer.Typer(help="Registry users and their roles.", no_args_is_help=True)


def _row(user) -> dict:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "is_custodian": user.is_custodian,
        "disabled": user.disabled,
        "created_at": iso(user.created_at),
    }


@app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Login name (lowercase slug).")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Make an administrator.")] = False,
    custodian: Annotated[bool, typer.Option("--custodian", help="Make a data custodian.")] = False,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Add a registry user. The first user ever added must be an --admin."""
    from hub import registry

    with registry_session() as s:
        user = registry.add_user(
            s, acting_user(actor), username, name, is_admin=admin, is_custodian=custodian
        )
        row = _row(user)
    if as_json:
        print_json(row)
    else:
        console.print(f"added user [bold]{username}[/]")


@app.command("list")
def list_users(as_json: Annotated[bool, JsonOption] = False) -> None:
    """List registry users."""
    from sqlalchemy import select

    from hub.models import User

    with registry_session(readonly=True) as s:
        rows = [_row(u) for u in s.execute(select(User).order_by(User.username)).scalars()]
    if as_json:
        print_json(rows)
        return
    table = Table("user", "name", "roles", "status")
    for r in rows:
        roles = ", ".join(k for k in ("admin", "custodian") if r[f"is_{k}"]) or "-"
        table.add_row(r["username"], r["display_name"], roles, "disabled" if r["disabled"] else "active")
    console.print(table)


def _set_disabled(username: str, disabled: bool, actor: str | None, as_json: bool) -> None:
    from hub import registry

    with registry_session() as s:
        row = _row(registry.set_user_disabled(s, acting_user(actor), username, disabled))
    if as_json:
        print_json(row)
    else:
        console.print(f"{'disabled' if disabled else 'enabled'} user [bold]{username}[/]")


@app.command("disable")
def disable(
    username: str,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Disable an account: it loses access to every project at once."""
    _set_disabled(username, True, actor, as_json)


@app.command("enable")
def enable(
    username: str,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Re-enable a disabled account."""
    _set_disabled(username, False, actor, as_json)


@app.command("grant-role")
def grant_role(
    username: str,
    role: Annotated[str, typer.Argument(help="admin or custodian")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the role away instead.")] = False,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Give a user a global role (administrators only; never to yourself)."""
    from hub import registry

    with registry_session() as s:
        row = _row(registry.set_user_role(s, acting_user(actor), username, role, on=not revoke))
    if as_json:
        print_json(row)
    else:
        change = f"removed role {role} from" if revoke else f"granted role {role} to"
        console.print(f"{change} {username}")
