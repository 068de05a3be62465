"""`tre catalog`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Catalogs.", no_args_is_help=True)
