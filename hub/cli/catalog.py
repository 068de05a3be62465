"""`tre catalog`: publish the dataset catalogue (metadata only) as HealthDCAT-AP JSON-LD or Turtle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from hub.cli._common import console, fail
from hub.cli._registry import registry_session

app = typer.Typer(help="Dataset catalogue export (HealthDCAT-AP).", no_args_is_help=True)


@app.command("export")
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
    base_uri: Annotated[
        str, typer.Option("--base-uri", help="Prefix of the catalogue's and datasets' identifiers.")
    ] = "urn:tre:",
    turtle: Annotated[bool, typer.Option("--turtle", help="Write Turtle instead of JSON-LD.")] = False,
) -> None:
    """Export every research dataset's latest version as HealthDCAT-AP (JSON-LD, or Turtle)."""
    from hub.kernel.settings import get_settings
    from hub.registry.catalogue import Publisher, catalog_jsonld, catalog_turtle

    publisher = Publisher.from_settings(get_settings())
    with registry_session(readonly=True) as s:
        doc = catalog_jsonld(s, base_uri, publisher=publisher)
    text = catalog_turtle(doc) if turtle else json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, output)  # readers never see half a file
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}; choose a writable --output path")
    console.print(f"wrote {len(doc['dcat:dataset'])} dataset(s) to {output}")
