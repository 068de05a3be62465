"""`tre demo`."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Demos.", no_args_is_help=True)


@app.command("data")
def data(
    out: Path = typer.Option(..., "--out", help="Folder to write the datasets into (created)."),
    patients: int = typer.Option(10_000, "--patients", min=1, help="Diabetes cohort size."),
    seed: int = typer.Option(0, "--seed", help="Same seed and size give the same data."),
    csv: bool = typer.Option(False, "--csv", help="Also write a CSV copy of every table."),
    as_json: bool = typer.Option(False, "--json", help="Print row counts as JSON."),
) -> None:
    """Generate synthetic diabetes, oncology and opt-out datasets (layout: hub/demo_data.py)."""
    from hub.cli._common import console, fail, print_json
    from hub.demo_data import generate

    try:
        with console.status(f"generating {patients:,} patients…", spinner="dots"):
            result = generate(out, patients=patients, seed=seed, csv=csv)
    except OSError as exc:
        fail(f"cannot write demo data to {out}: {exc.strerror or exc}; choose a writable --out folder")
    if as_json:
        print_json({"out": str(result.out_dir), "seed": seed, "patients": patients, "rows": result.rows})
        return
    for dataset, tables in result.rows.items():
        for table, rows in tables.items():
            console.print(f"{dataset + '/' + table + '.parquet':<32}{rows:>12,} rows")
    console.print(f"{result.total_rows:,} rows in {result.out_dir}")
