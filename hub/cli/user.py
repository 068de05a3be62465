"""`tre user`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Users.", no_args_is_help=True)
