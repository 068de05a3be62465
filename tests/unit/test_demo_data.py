"""The synthetic generator: deterministic, valid identifiers, linked datasets, skewed categories."""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

from hub.demo.data import TABLES, generate, is_valid_nhs_number


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return generate(out, patients=3_000, seed=7)


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.parquet"))}


def test_layout_and_manifest(demo):
    meta = json.loads((demo.out_dir / "demo_data.json").read_text())
    assert meta["patients"] == 3_000 and meta["seed"] == 7
    for dataset, tables in TABLES.items():
        for table, columns in tables.items():
            path = demo.path(dataset, table)
            assert path.is_file()
            got = [r[0] for r in duckdb.connect().sql(f"DESCRIBE SELECT * FROM '{path}'").fetchall()]
            assert got == list(columns)
            assert meta["datasets"][dataset][table]["rows"] == demo.rows[dataset][table]
    assert demo.rows["diabetes"]["patients"] == 3_000
    # about ten event rows per patient
    assert 7 < demo.total_rows / 3_000 < 14


def test_same_seed_same_bytes_other_seed_other_data(demo, tmp_path):
    again = generate(tmp_path / "again", patients=3_000, seed=7)
    assert _digest(again.out_dir) == _digest(demo.out_dir)
    other = generate(tmp_path / "other", patients=3_000, seed=8)
    assert _digest(other.out_dir) != _digest(demo.out_dir)


def test_identifiers_unique_and_valid(demo):
    ids = [
        r[0]
        for r in duckdb.connect()
        .sql(f"SELECT nhs_number FROM '{demo.path('diabetes', 'patients')}'")
        .fetchall()
    ]
    assert len(set(ids)) == len(ids)
    assert all(is_valid_nhs_number(i) for i in ids)
    assert not is_valid_nhs_number("1234567890")  # wrong check digit
    assert is_valid_nhs_number("9434765919")  # the NHS's published example


def test_datasets_are_linked(demo):
    p = demo.path
    con = duckdb.connect()
    shared, outside = con.execute(
        f"""SELECT count(*) FILTER (WHERE p.nhs_number IS NOT NULL),
                   count(*) FILTER (WHERE p.nhs_number IS NULL)
            FROM (SELECT DISTINCT nhs_number FROM '{p("oncology", "tumours")}') t
            LEFT JOIN '{p("diabetes", "patients")}' p USING (nhs_number)"""
    ).fetchone()
    assert shared > 0 and outside > 0
    orphans = con.execute(
        f"""SELECT count(*) FROM '{p("diabetes", "hba1c")}' h
            ANTI JOIN '{p("diabetes", "patients")}' USING (nhs_number)"""
    ).fetchone()[0]
    assert orphans == 0
    bad_dates = con.execute(
        f"""SELECT count(*) FROM '{p("diabetes", "hba1c")}'
            JOIN '{p("diabetes", "patients")}' USING (nhs_number)
            WHERE test_date < diagnosis_date OR diagnosis_date < birth_date
               OR test_date > DATE '2025-12-31'"""
    ).fetchone()[0]
    assert bad_dates == 0
    opted = con.execute(f"SELECT count(DISTINCT nhs_number) FROM '{p('optout', 'optout')}'").fetchone()[0]
    assert opted > 0


def test_rare_categories_make_small_cells(demo):
    counts = dict(
        duckdb.connect()
        .sql(f"SELECT diabetes_type, count(*) FROM '{demo.path('diabetes', 'patients')}' GROUP BY ALL")
        .fetchall()
    )
    assert counts["type_2"] > 2_000
    assert 0 < min(counts.values()) < 10
    small_districts = (
        duckdb.connect()
        .execute(
            f"""SELECT count(*) FROM (SELECT postcode_district, count(*) n
            FROM '{demo.path("diabetes", "patients")}' GROUP BY ALL) WHERE n < 5"""
        )
        .fetchone()[0]
    )
    assert small_districts > 10


def test_cli_writes_the_layout(tmp_path):
    from typer.testing import CliRunner

    from hub.cli import app

    result = CliRunner().invoke(app, ["demo", "data", "--patients", "200", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"]["diabetes"]["patients"] == 200
    assert (tmp_path / "oncology" / "treatments.parquet").is_file()
