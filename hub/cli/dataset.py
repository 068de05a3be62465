"""`tre dataset`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Datasets.", no_args_is_help=True)
