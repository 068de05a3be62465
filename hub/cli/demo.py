"""`tre demo`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Demos.", no_args_is_help=True)
