"""`tre dataset`: register source files as versioned datasets and inspect them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli._common import acting_user, console, print_json
from hub.cli._registry import ActorOption, JsonOption, iso, parse_pairs, registry_session

app = typer.Typer(help="Datasets: register sources, list and show versions.", no_args_is_help=True)


def dataset_row(ds) -> dict:
    return {
        "name": ds.name,
        "version": ds.version,
        "ref": ds.ref,
        "title": ds.title,
        "description": ds.description,
        "kind": ds.kind,
        "custodian": ds.custodian.username,
        "identifier_column": ds.identifier_column,
        "person_table": ds.person_table,
        "row_count": ds.row_count,
        "unique_individuals": ds.unique_individuals,
        "profile": ds.profile,
        "health_categories": ds.health_categories,
        "content_hash": ds.content_hash,
        "created_at": iso(ds.created_at),
        "tables": ds.tables,
    }


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Dataset name (lowercase slug).")],
    table: Annotated[
        list[str],
        typer.Option("--table", "-t", help="NAME=PATH of a CSV/TSV/Parquet file; repeat per table."),
    ],
    identifier_column: Annotated[
        str, typer.Option("--identifier-column", "-i", help="The person identifier column.")
    ],
    kind: Annotated[
        str, typer.Option("--kind", help="cohort (research data) or optout (opt-out list).")
    ] = "cohort",
    title: Annotated[str | None, typer.Option("--title")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    person_table: Annotated[
        str | None,
        typer.Option("--person-table", help="Table with one row per person (default: the first --table)."),
    ] = None,
    sensitivity: Annotated[
        list[str] | None,
        typer.Option(
            "--sensitivity",
            help="[TABLE.]COLUMN=identifier|quasi-identifier|sensitive|other (overrides the guess).",
        ),
    ] = None,
    coding: Annotated[
        list[str] | None,
        typer.Option("--coding", help="[TABLE.]COLUMN=SYSTEM (e.g. ATC, ICD-O-3) for the catalogue."),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category",
            help="Its EHDS Art. 51 health category, by code; repeat for more (`tre dataset categories`). "
            "Default: the previous version's, else EHRS (electronic health records).",
        ),
    ] = None,
    actor: Annotated[str | None, ActorOption] = None,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Register a dataset; re-adding changed sources creates a new version, unchanged ones nothing."""
    from hub import registry

    tables = [registry.SourceFile(k, Path(v)) for k, v in parse_pairs(table, "--table").items()]
    with registry_session() as s:
        ds, created = registry.register_dataset(
            s,
            acting_user(actor),
            name,
            tables,
            identifier_column,
            kind=kind,
            title=title,
            description=description,
            person_table=person_table,
            sensitivity=parse_pairs(sensitivity, "--sensitivity"),
            coding=parse_pairs(coding, "--coding"),
            health_categories=[c.strip().upper() for c in category or ()],
        )
        row = dataset_row(ds) | {"created": created}
    if as_json:
        print_json(row)
    elif created:
        console.print(
            f"registered [bold]{row['ref']}[/]: {len(row['tables'])} table(s), {row['row_count']:,} rows, "
            f"{row['unique_individuals']:,} individuals"
        )
    else:
        console.print(f"{row['ref']} is already registered with these exact sources; nothing to do")


@app.command("categories")
def categories(as_json: Annotated[bool, JsonOption] = False) -> None:
    """The EHDS Art. 51 health categories a dataset can be catalogued under (HealthDCAT-AP's codes)."""
    from hub.registry.vocabulary import HealthCategory

    rows = [{"code": c.value, "label": c.label, "iri": c.iri} for c in HealthCategory]
    if as_json:
        print_json(rows)
        return
    out = Table("code", "category")
    for r in rows:
        out.add_row(r["code"], r["label"])
    console.print(out)


@app.command("list")
def list_datasets(
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Show every version.")] = False,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """List datasets (latest version of each unless --all-versions)."""
    from sqlalchemy import select

    from hub.registry.models import Dataset

    with registry_session(readonly=True) as s:
        rows = [
            dataset_row(d)
            for d in s.execute(select(Dataset).order_by(Dataset.name, Dataset.version)).scalars()
        ]
    if not all_versions:
        latest = {r["name"]: r for r in rows}
        rows = list(latest.values())
    if as_json:
        print_json(rows)
        return
    out = Table("dataset", "kind", "title", "tables", "rows", "individuals", "registered")
    for r in rows:
        out.add_row(
            r["ref"],
            r["kind"],
            r["title"],
            str(len(r["tables"])),
            f"{r['row_count']:,}",
            f"{r['unique_individuals']:,}",
            r["created_at"][:10],
        )
    console.print(out)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME (latest version) or NAME:VERSION.")],
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Show a dataset version: tables, columns, types, sensitivity labels."""
    from hub import registry

    with registry_session(readonly=True) as s:
        row = dataset_row(registry.get_dataset(s, ref))
    if as_json:
        print_json(row)
        return
    console.print(f"[bold]{row['ref']}[/] {row['title']} ({row['kind']}, custodian {row['custodian']})")
    if row["description"]:
        console.print(row["description"])
    console.print(
        f"identifier {row['identifier_column']} (unique in {row['person_table']}), "
        f"{row['row_count']:,} rows, {row['unique_individuals']:,} individuals, {row['content_hash']}"
    )
    for t in row["tables"]:
        out = Table(
            "column",
            "type",
            "sensitivity",
            "coding",
            title=f"{t['name']} ({t['row_count']:,} rows, {t['source']})",
        )
        for c in t["columns"]:
            out.add_row(c["name"], c["type"], c["sensitivity"], c.get("coding_system", ""))
        console.print(out)


@app.command("verify")
def verify(ref: Annotated[str, typer.Argument(help="NAME or NAME:VERSION.")]) -> None:
    """Check that a dataset's source files are still exactly what was registered."""
    from hub import registry

    with registry_session(readonly=True) as s:
        ds = registry.get_dataset(s, ref)
        registry.verify_dataset_sources(ds)
        ref = ds.ref
    console.print(f"{ref}: every source file matches its registered hash")
