"""Helpers shared by the CLI groups: one-line errors, JSON output, the acting user."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any, NoReturn

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error that says what to do next, and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def acting_user(explicit: str | None = None) -> str:
    """Who runs this command: --as (or $TRE_ACTOR, its environment form), else the operating-system user."""
    return explicit or getpass.getuser()
