"""`tre grant`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Grants.", no_args_is_help=True)
