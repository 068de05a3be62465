"""`tre egress`: disclosure checks, release verification and the review service."""

from __future__ import annotations

import typer

app = typer.Typer(help="Egress: disclosure checks and release verification.", no_args_is_help=True)
