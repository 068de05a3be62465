"""What a release contains: plain dataclasses, built by the registry glue or by tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

# Dataset and table names become folder names and SQL schema/view names.
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

# Told each step of a build: (step title, steps done, steps in all).
StepCallback = Callable[[str, int, int], None]


class ProvisioningError(Exception):
    """A build failed; the message is one line that says what to do next."""


@dataclass(frozen=True)
class SourceTable:
    """One source file and what of it a project may see."""

    name: str
    path: Path
    format: str = "parquet"  # "parquet" | "csv"
    # Approved columns, in output order. Empty: the table is read only for checks (opt-out list).
    columns: tuple[str, ...] = ()
    identifier_column: str | None = None  # the person identifier (opt-out, pseudonyms, date shift)
    pseudonymise: tuple[str, ...] = ()  # columns replaced by pseudonyms; must cover the identifier
    unique_identifier: bool = False  # one row per person: duplicate identifiers fail the build
    # As registered: {column: DuckDB type}. A source whose columns differ fails the build.
    expected_schema: dict[str, str] | None = None
    content_hash: str | None = None  # "sha256:<hex>" as registered; a changed file fails the build


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    tables: tuple[SourceTable, ...]
    version: int = 1
    remove_opted_out: bool = True
    age_band_years: int | None = None  # 5 or 10: birth date -> age band at the reference date
    birth_date_column: str | None = None  # replaced by `age_band` in every table that has it
    date_shift_days: int | None = None  # each person's dates move by the same offset in ±N days
    grant: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest as is


@dataclass(frozen=True)
class ReleaseSpec:
    project: str
    datasets: tuple[DatasetSpec, ...]
    master_key: bytes = field(repr=False)
    optouts: tuple[SourceTable, ...] = ()  # lists of opted-out identifiers (their identifier_column)
    release: int | None = None  # None: one more than the highest existing release
    reference_date: date | None = None  # for age bands; None: the build date (UTC)
    keep: int = 2  # releases kept after publishing (the new one included)
    # Delete every older release (revoked grant, closed project): their data must go.
    purge: bool = False


@dataclass(frozen=True)
class ReleaseResult:
    project: str
    release: int
    path: Path  # releases/<n>
    rows_in: int  # source rows read
    rows_out: int  # rows written
    seconds: float
    deleted_releases: tuple[int, ...]
    manifest: dict[str, Any]
