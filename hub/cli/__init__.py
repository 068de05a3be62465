"""The `tre` command line: one Typer app with a sub-command group per concept, the outermost layer.

Each group lives in its own module; imports of the TRE's packages (and of duckdb, pandas, docker)
stay inside the command functions so `tre --help` is instant. For automation: the portal and the
egress service call the same operations.
"""

from __future__ import annotations

import typer

from hub.cli import (
    audit,
    backup,
    catalog,
    dataset,
    demo,
    egress,
    grant,
    guard,
    hub_cmd,
    images,
    network,
    permit,
    project,
    tls,
    user,
)

app = typer.Typer(
    name="tre",
    help="Trusted research environment: registry, workspaces and egress review.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(user.app, name="user")
app.add_typer(dataset.app, name="dataset")
app.add_typer(project.app, name="project")
app.add_typer(grant.app, name="grant")
app.add_typer(permit.app, name="permit")
app.add_typer(audit.app, name="audit")
app.add_typer(catalog.app, name="catalog")
app.add_typer(demo.app, name="demo")
app.add_typer(images.app, name="images")
app.add_typer(network.app, name="network")
app.add_typer(guard.app, name="guard")
app.add_typer(tls.app, name="tls")
app.add_typer(egress.app, name="egress")
app.command("hub")(hub_cmd.hub)
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)


def main() -> None:
    app()
