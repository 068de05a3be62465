"""Dataset intake: reading registered source files with DuckDB, and what can be guessed about them.

The CSV dialect lives here once: registration scans a source with `source_relation`, and the
provisioning builder reads it with the same call, so the schema checked at build time is the
schema registered. Sensitivity and coding-system labels are guesses from column names and types;
the custodian overrides them at registration.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from hub.kernel.hashing import file_sha256
from hub.registry.errors import RegistryError
from hub.registry.vocabulary import Sensitivity

TABLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}

PARQUET_SUFFIXES = {".parquet", ".pq"}

BIRTH_DATE_RE = re.compile(r"(^|_)(birth_?date|date_?of_?birth|dob|birth)($|_)")

QUASI_RE = re.compile(r"(birth|dob|postcode|postal|zip|sex|gender|ethnic|date)")

CODING_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|_)atc($|_)"), "ATC"),
    (re.compile(r"icd_?o_?3|topography|morphology"), "ICD-O-3"),
    (re.compile(r"icd_?10"), "ICD-10"),
    (re.compile(r"snomed"), "SNOMED CT"),
    (re.compile(r"loinc"), "LOINC"),
)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def source_relation(path: Path, text_columns: Iterable[str] = ()) -> tuple[str, str]:
    """(format, DuckDB table function call) for a source file, refusing unknown formats.

    Provisioning reads CSV sources with the same dialect, so it sees the schema registered here.
    `text_columns` (CSV only) are read as VARCHAR: identifiers must keep their leading zeros.
    """
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        # Explicit dialect + strict mode: a ragged or badly quoted file fails instead of being
        # "sniffed" into one wide text column.
        delim = _sql_str(CSV_SUFFIXES[suffix])
        types = ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in sorted(set(text_columns)))
        return "csv", (
            f"read_csv({_sql_str(str(path))}, header=true, delim={delim}, quote='\"', "
            f"strict_mode=true, null_padding=false{f', types={{{types}}}' if types else ''})"
        )
    if suffix in PARQUET_SUFFIXES:
        return "parquet", f"read_parquet({_sql_str(str(path))})"
    raise RegistryError(f"{path}: unsupported format {suffix or '(none)'}; use .csv, .tsv or .parquet")


def _csv_header(path: Path) -> list[str]:
    """The header's column names, refusing blank or repeated ones."""
    # DuckDB quietly renames repeated or blank header names; a registry must not guess which is which.
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh, delimiter=CSV_SUFFIXES[path.suffix.lower()]), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RegistryError(f"cannot read the header of {path}: {exc}; save it as UTF-8 CSV") from None
    names = [h.strip() for h in header]
    if any(not n for n in names):
        raise RegistryError(f"{path} has a blank column name in its header; name every column")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RegistryError(f"{path} has duplicate column names ({', '.join(dupes)}); make each name unique")
    return names


def _coding_system(column: str) -> str | None:
    lowered = column.lower()
    return next((system for pattern, system in CODING_HINTS if pattern.search(lowered)), None)


def _default_sensitivity(column: str, col_type: str, identifier: str) -> Sensitivity:
    if column == identifier:
        return Sensitivity.IDENTIFIER
    if QUASI_RE.search(column.lower()) or col_type in ("DATE", "TIMESTAMP"):
        return Sensitivity.QUASI_IDENTIFIER
    if _coding_system(column):
        return Sensitivity.SENSITIVE
    return Sensitivity.OTHER


def scan_table(
    con: Any,
    name: str,
    path: Path,
    identifier_column: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Read one source file's schema, row count and content hash with DuckDB (a TableSpec)."""
    if not TABLE_NAME_RE.match(name):
        raise RegistryError(
            f"invalid table name {name!r}: use lowercase letters, digits and '_', starting with a letter"
        )
    path = path.expanduser().resolve()
    if not path.exists():
        raise RegistryError(f"source file {path} not found; check the path given for table {name!r}")
    if not path.is_file():
        raise RegistryError(f"source {path} for table {name!r} is not a regular file")
    if path.stat().st_size == 0:
        raise RegistryError(f"source file {path} for table {name!r} is empty")
    text_columns = []
    if path.suffix.lower() in CSV_SUFFIXES and identifier_column in _csv_header(path):
        text_columns = [identifier_column]
    fmt, relation = source_relation(path, text_columns)
    view = f"src_{name}"
    try:
        con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS SELECT * FROM {relation}')
        described = con.execute(f'DESCRIBE "{view}"').fetchall()
        row_count = int(con.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0])
    except Exception as exc:  # duckdb raises many exception types; all mean "cannot read this file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryError(f"cannot read {path} for table {name!r} as {fmt}: {first}") from None
    names = [row[0] for row in described]
    if len(set(names)) != len(names):
        raise RegistryError(f"{path} has duplicate column names; fix the header and try again")
    overrides = overrides or {}
    columns = []
    for col_name, col_type, *_ in described:
        col: dict[str, Any] = {
            "name": col_name,
            "type": str(col_type),
            "sensitivity": overrides.get(col_name)
            or _default_sensitivity(col_name, str(col_type), identifier_column),
        }
        if coding := _coding_system(col_name):
            col["coding_system"] = coding
        columns.append(col)
    return {
        "name": name,
        "source": str(path),
        "format": fmt,
        "columns": columns,
        "identifier_column": identifier_column if identifier_column in names else None,
        "row_count": row_count,
        "content_hash": "sha256:" + file_sha256(path),
    }


def person_facts(con: Any, table: dict[str, Any], identifier: str) -> tuple[int, dict[str, Any]]:
    """Unique individuals (refusing duplicate or missing identifiers) and the typical age range."""
    view = f'"src_{table["name"]}"'
    ident = '"' + identifier.replace('"', '""') + '"'
    total, distinct, missing = con.execute(
        f"SELECT count(*), count(DISTINCT {ident}), count(*) FILTER (WHERE {ident} IS NULL) FROM {view}"
    ).fetchone()
    if missing:
        raise RegistryError(
            f"{table['source']}: {missing} rows of table {table['name']!r} have no {identifier}; "
            "every individual needs an identifier"
        )
    if distinct != total:
        raise RegistryError(
            f"{table['source']}: {total - distinct} duplicate {identifier} values in table "
            f"{table['name']!r}, which must have one row per individual; de-duplicate the file"
        )
    profile: dict[str, Any] = {}
    birth = next(
        (
            c["name"]
            for c in table["columns"]
            if BIRTH_DATE_RE.search(c["name"].lower()) and c["type"] in ("DATE", "TIMESTAMP")
        ),
        None,
    )
    if birth and total:
        # "Typical" = 5th to 95th percentile of age today, whole years.
        col = '"' + birth.replace('"', '""') + '"'
        quantiles = con.execute(
            f"SELECT quantile_cont(date_diff('day', {col}::DATE, current_date) / 365.25, [0.05, 0.95]) "
            f"FROM {view}"
        ).fetchone()[0]
        profile = {"birth_date_column": birth}
        if quantiles is not None and None not in quantiles:  # all birth dates missing: no age range
            profile |= {"min_typical_age": int(quantiles[0]), "max_typical_age": int(quantiles[1])}
    return int(distinct), profile


def scan_sources(
    tables: list[tuple[str, Path]],
    identifier_column: str,
    person: str,
    sensitivity: Mapping[str, Mapping[str, str]],
    coding: Mapping[str, Mapping[str, str]],
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """Scan every source of a dataset: (TableSpecs, unique individuals, catalogue profile).

    `sensitivity` and `coding` are label overrides as {table or "*": {column: label}}.
    """
    con = duckdb.connect()
    try:
        specs = []
        for table_name, path in tables:
            spec = scan_table(
                con,
                table_name,
                path,
                identifier_column,
                {**sensitivity.get("*", {}), **sensitivity.get(table_name, {})},
            )
            for column, system in {**coding.get("*", {}), **coding.get(table_name, {})}.items():
                col = next((c for c in spec["columns"] if c["name"] == column), None)
                if col is None:
                    raise RegistryError(
                        f"--coding names column {column!r}, which table {table_name!r} does not have"
                    )
                col["coding_system"] = system
            specs.append(spec)
        for key_table, mapping in sensitivity.items():
            targets = specs if key_table == "*" else [s for s in specs if s["name"] == key_table]
            if not targets:
                raise RegistryError(f"--sensitivity names table {key_table!r}, which is not registered here")
            for column in mapping:
                if not any(column in [c["name"] for c in s["columns"]] for s in targets):
                    raise RegistryError(f"--sensitivity names column {column!r}, which no given table has")
        person_spec = next(s for s in specs if s["name"] == person)
        if person_spec["identifier_column"] is None:
            raise RegistryError(
                f"table {person!r} has no column {identifier_column!r}; pass the right --identifier-column"
            )
        unique_individuals, profile = person_facts(con, person_spec, identifier_column)
    finally:
        con.close()
    return specs, unique_individuals, profile
