"""`tre user`: registry users and their global roles (administrator, data custodian).

Passwords and second factors live in the hub's authenticator; this only manages who exists in the
registry and what they may do.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hub.cli._common import acting_user, console, print_json
from hub.cli._registry import ActorOption, JsonOption, cli_settings, iso, registry_session, registry_settings

app = typer.Typer(help="Registry users and their roles.", no_args_is_help=True)


def _row(user) -> dict:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "is_custodian": user.is_custodian,
        "disabled": user.disabled,
        "subject": user.subject,
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
    login: Annotated[
        bool, typer.Option("--login/--no-login", help="Also create the hub login (password + TOTP).")
    ] = True,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the initial password from stdin.")
    ] = False,
) -> None:
    """Add a registry user (and their hub login). The first user ever added must be an --admin."""
    from hub import registry

    with registry_session() as s:
        user = registry.add_user(
            s, acting_user(actor), username, name, is_admin=admin, is_custodian=custodian
        )
        row = _row(user)
    if login:
        row["login"] = _issue_login(username, password_stdin)
    if as_json:
        print_json(row)
    else:
        console.print(f"added user [bold]{username}[/]")
        if login:
            print_login(username, row["login"])


def _issue_login(username: str, password_stdin: bool) -> dict:
    import sys

    from hub.cli._common import fail
    from hub.workspaces.login import issue_login

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        return issue_login(username, cli_settings(), password)
    except ValueError as exc:
        fail(f"{exc}; the registry user exists, so set the login with `tre user reset-login {username}`")


@app.command("reset-login")
def reset_login(
    username: Annotated[str, typer.Argument(help="Login name.")],
    as_json: Annotated[bool, JsonOption] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
) -> None:
    """Give a registry user a new hub password and a new TOTP secret."""
    from hub.cli._common import fail

    with registry_session(readonly=True) as s:
        from hub import registry

        if registry.find_user(s, username) is None:
            fail(f"no registry user {username!r}; add them with `tre user add {username}`")
    login = _issue_login(username, password_stdin)
    if as_json:
        print_json({"username": username, "login": login})
    else:
        print_login(username, login)


@app.command("list")
def list_users(as_json: Annotated[bool, JsonOption] = False) -> None:
    """List registry users."""
    from sqlalchemy import select

    from hub.registry.models import User

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
    from hub.cli._registry import one_line_errors
    from hub.cli.project import report_stopped
    from hub.enforcement import disable_user

    if disabled:  # the account's running workspaces stop at once
        with one_line_errors():
            withdrawal = disable_user(registry_settings(), acting_user(actor), username)
    else:
        with registry_session() as s:
            registry.set_user_disabled(s, acting_user(actor), username, False)
    with registry_session(readonly=True) as s:
        row = _row(registry.get_user(s, username))
    if as_json:
        print_json(row)
    else:
        console.print(f"{'disabled' if disabled else 'enabled'} user [bold]{username}[/]")
        if disabled:
            report_stopped(withdrawal)


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


@app.command("set-subject")
def set_subject(
    username: str,
    subject: Annotated[str, typer.Argument(help="Their immutable id at the identity provider (OIDC sub).")],
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Link a user to their institutional identity (administrators; "" unlinks). See docs/oidc.md."""
    from hub import registry

    with registry_session() as s:
        row = _row(registry.set_user_subject(s, acting_user(actor), username, subject))
    if as_json:
        print_json(row)
    else:
        console.print(
            f"{username} signs in as subject {row['subject']!r}" if row["subject"] else f"{username} unlinked"
        )


def print_login(username: str, login: dict) -> None:
    """Show a new login's secrets once, with the TOTP QR code for an authenticator app."""
    import io

    import qrcode

    if "password" in login:
        console.print(f"initial password for {username}: [bold]{login['password']}[/]", highlight=False)
    console.print(
        f"TOTP secret: {login['totp_secret']}  ({login['totp_uri']})", highlight=False, soft_wrap=True
    )
    qr = qrcode.QRCode(border=1)
    qr.add_data(login["totp_uri"])
    buf = io.StringIO()
    qr.print_ascii(out=buf)
    console.print(buf.getvalue(), highlight=False)
    console.print("Hand these over privately; they are not shown again (reset: tre user reset-login).")
