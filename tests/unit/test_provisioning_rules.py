"""Safe data at provisioning, attacked with the ways sources really store things: opted-out people
listed as numbers, with spaces or without leading zeros; dates kept as text; reference tables with no
person identifier. (The end-to-end provisioning tests are tests/integration/test_provisioning.py.)"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub.provisioning import DatasetSpec, ProvisioningError, ReleaseSpec, SourceTable, build_release

KEY = b"k" * 32
PEOPLE = ["9434765919", "0123456789", "9434765920", "4010232137", "4010232145"]


def parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def spec(tables: tuple[SourceTable, ...], optouts: tuple[SourceTable, ...] = (), shift: int | None = None):
    dataset = DatasetSpec("cohort", tables, remove_opted_out=True, date_shift_days=shift)
    return ReleaseSpec("proj", (dataset,), master_key=KEY, optouts=optouts)


def person_table(folder: Path, **extra) -> SourceTable:
    path = parquet(folder / "patients.parquet", nhs_number=PEOPLE, sex=["F", "M", "F", "M", "F"], **extra)
    columns = ("nhs_number", "sex", *extra)
    return SourceTable(
        "patients", path, columns=columns, identifier_column="nhs_number", pseudonymise=("nhs_number",)
    )


def rows(release: Path, table: str = "patients") -> list[dict]:
    cur = duckdb.connect().execute(f"SELECT * FROM '{release}/data/cohort/{table}.parquet'")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_opted_out_people_are_removed_however_the_list_writes_their_number(tmp_path):
    # As a number (no leading zero possible), with spaces and hyphens, without the leading zero.
    optout = parquet(tmp_path / "optout.parquet", id=["  943 476-5919 ", "123456789", "9434765920"])
    as_numbers = parquet(tmp_path / "optout_numbers.parquet", id=pa.array([4010232137.0], pa.float64()))
    result = build_release(
        tmp_path / "proj",
        spec(
            (person_table(tmp_path),),
            optouts=(
                SourceTable("optout", optout, identifier_column="id"),
                SourceTable("optout-numbers", as_numbers, identifier_column="id"),
            ),
        ),
    )
    assert len(rows(result.path)) == 1, "only 4010232145 did not opt out"
    assert result.manifest["optout"] == {
        "lists": ["optout", "optout-numbers"],
        "entries": 4,
        "identifiers_matched": 4,
    }


def test_a_table_without_a_person_identifier_is_released_as_reference_and_named(tmp_path):
    codes = parquet(tmp_path / "codes.parquet", code=["E10", "E11"], label=["Type 1", "Type 2"])
    lookup = SourceTable("codes", codes, columns=("code", "label"))
    result = build_release(tmp_path / "proj", spec((person_table(tmp_path), lookup)))
    assert len(rows(result.path, "codes")) == 2
    assert result.manifest["optout"]["tables_without_identifier"] == ["cohort/codes"]


def test_dates_stored_as_text_move_with_each_persons_shift(tmp_path):
    table = person_table(
        tmp_path,
        day=list(range(1, 6)),  # which row is which once identifiers are pseudonyms
        seen=[date(2021, 3, d) for d in range(1, 6)],
        seen_text=[f"2021-03-0{d}" for d in range(1, 6)],  # the same dates, as text
        seen_uk=[f"0{d}/03/2021" for d in range(1, 6)],  # and day-first
        seen_words=[f"0{d} Mar 2021" for d in range(1, 6)],  # and with the month's name
        notes=["stable", "", None, "review 2021", "ok"],  # text that is not dates stays as it is
    )
    result = build_release(tmp_path / "proj", spec((table,), shift=30))
    out = rows(result.path)
    moved = [(r["seen"] - date(2021, 3, r["day"])).days for r in out]
    assert any(moved) and all(abs(m) <= 30 for m in moved)
    for r in out:  # each person's text dates moved exactly as their real dates did
        assert r["seen_text"] == r["seen_uk"] == r["seen_words"] == r["seen"], r
    assert sorted(r["notes"] for r in out if r["notes"]) == ["ok", "review 2021", "stable"]
    assert result.manifest["text_dates_shifted"] == [
        "cohort/patients/seen_text",
        "cohort/patients/seen_uk",
        "cohort/patients/seen_words",
    ]


def test_a_text_column_with_dates_in_no_one_layout_stops_the_build_naming_it(tmp_path):
    table = person_table(tmp_path, admitted=["2021-03-01", "02/03/2021", "March 3rd", "2021-03-04", None])
    with pytest.raises(
        ProvisioningError, match=r"cohort/patients: column admitted holds dates stored as text"
    ):
        build_release(tmp_path / "proj", spec((table,), shift=30))
    assert not (tmp_path / "proj" / "current").exists()


def test_the_manifest_records_each_released_numeric_columns_bounds(tmp_path):
    table = person_table(tmp_path, hba1c=[48.0, 53.5, 120.25, 31.0, 77.0], visits=[1, 4, 2, 9, 3])
    bounds = build_release(tmp_path / "proj", spec((table,))).manifest["bounds"]
    assert bounds == {"cohort/patients/hba1c": [31.0, 120.25], "cohort/patients/visits": [1.0, 9.0]}
