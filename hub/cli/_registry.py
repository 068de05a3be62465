"""Shared plumbing for the registry command groups: one transaction per command, errors as one line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from hub.cli._common import fail

if TYPE_CHECKING:  # sqlalchemy is imported only when a command runs, so `tre --help` stays instant
    from sqlalchemy.orm import Session

    from hub.kernel.settings import Settings
    from hub.provisioning import StepCallback

# For Annotated[...] parameters (defaults go on the parameter itself).
ActorOption = typer.Option(
    "--as", envvar="TRE_ACTOR", help="Act as this registry user (default: $TRE_ACTOR, else the OS user)."
)
JsonOption = typer.Option("--json", help="Print JSON for scripts instead of a table.")

RELATIVE_RE = re.compile(r"^\+(\d+)d$")


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Registry, rule and provisioning errors end the command with their one-line message."""
    from sqlalchemy.exc import SQLAlchemyError

    from hub.enforcement import WithdrawalIncomplete
    from hub.provisioning import ProvisioningError
    from hub.registry import NotAllowed, RegistryError
    from hub.registry.access import AccessDenied

    try:
        yield
    except (RegistryError, NotAllowed, AccessDenied, ProvisioningError, WithdrawalIncomplete) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        first = str(exc).strip().splitlines()[0]
        fail(f"registry database error ({first}); check TRE_ROOT / TRE_DB_URL and try again")


def cli_settings() -> Settings:
    """The command's settings: read from the environment here, the one place a command reads them."""
    from hub.kernel.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        fail(str(exc))


def registry_settings() -> Settings:
    """The command's settings, with the registry's schema brought to the current version."""
    from hub.kernel.db import upgrade

    settings = cli_settings()
    with one_line_errors():
        upgrade(settings)
    return settings


@contextmanager
def registry_session(readonly: bool = False) -> Iterator[Session]:
    """Run the command in one transaction: all of it commits or none."""
    from hub.kernel.db import session_scope

    settings = registry_settings()
    with one_line_errors(), session_scope(settings, readonly=readonly) as session:
        yield session


@contextmanager
def progress_bar(title: str) -> Iterator[StepCallback]:
    """A Rich progress bar for a provisioning build; yields the step callback to hand it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from hub.cli._common import console

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(title, total=None)

        def step(name: str, done: int, total: int) -> None:
            bar.update(task, description=f"{title}: {name}", completed=done, total=total or None)

        yield step


def parse_when(value: str, option: str = "--expires") -> datetime:
    """YYYY-MM-DD (start of that day, UTC), an ISO timestamp, or +Nd (N days from now)."""
    if m := RELATIVE_RE.match(value):
        return datetime.now(UTC) + timedelta(days=int(m.group(1)))
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date: use YYYY-MM-DD, an ISO timestamp or +Nd")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """["k=v", ...] -> {k: v}, refusing malformed or repeated keys."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key or not val:
            fail(f"{option} {item!r}: use KEY=VALUE")
        if key in out:
            fail(f"{option} {key} given twice")
        out[key] = val
    return out


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}
