"""`tre audit`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Audits.", no_args_is_help=True)
