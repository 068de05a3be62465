"""`tre network`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Networks.", no_args_is_help=True)
