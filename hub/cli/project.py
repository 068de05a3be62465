"""`tre project`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Projects.", no_args_is_help=True)
