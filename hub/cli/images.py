"""`tre images`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Imagess.", no_args_is_help=True)
