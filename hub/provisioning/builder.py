"""Pure release builder: a ReleaseSpec in, a published release directory out.

Layout of a project directory (docs/architecture.md, "Storage layout"):

```
<project_dir>/
  current -> releases/<n>                 swapped atomically (symlink + rename)
  releases/<n>/data/<dataset>/<table>.parquet   (zstd)
  releases/<n>/catalog.duckdb             one schema per dataset, one view per table
  releases/<n>/manifest.json              files (sha256, rows), datasets, grants, build time
  releases/.build-<n>/                    only while building; removed on any failure
```

The catalogue's views read `data/<dataset>/<table>.parquet`, a path relative to the release root:
DuckDB resolves it against the working directory and then `file_search_path`, which
`tre_notebook.connect()` sets to the mounted release (`/data` in a workspace). That keeps one
catalogue valid wherever the release is mounted: at `/data` in the container, and at its real
path on the host for checks and tests. (An absolute `/data/...` path would not exist on the host
at build time, and DuckDB binds view paths when the view is created.) The catalogue's storage
version is pinned to CATALOG_STORAGE_VERSION; the notebook image installs the host's exact DuckDB.

Governance happens here, when data is materialised: only approved columns are written, opted-out
people are removed, identifier columns become per-project keyed pseudonyms (hub.provisioning.
pseudonym), birth dates may become age bands, and each person's dates may move by one secret
offset. Nothing is published unless every step succeeded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from hub.kernel.hashing import file_sha256
from hub.provisioning.pseudonym import create_pseudonym_table, project_key
from hub.provisioning.spec import (
    NAME_RE,
    DatasetSpec,
    ProvisioningError,
    ReleaseResult,
    ReleaseSpec,
    SourceTable,
    StepCallback,
)
from hub.registry.errors import RegistryError
from hub.registry.intake import source_relation

# The oldest storage format the catalogue is written in; the notebook image's DuckDB must read it.
CATALOG_STORAGE_VERSION = "v1.4.0"
CATALOG_FILE = "catalog.duckdb"
MANIFEST_FILE = "manifest.json"
# Text layouts read as dates when a dataset's dates are shifted (ISO dates and times are tried first).
# Day-first before month-first: European registries; a compact %Y%m%d is never guessed (codes look so).
TEXT_DATE_FORMATS = ("%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%d.%m.%Y", "%d %b %Y", "%d %B %Y")
NUMERIC_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
     "FLOAT", "DOUBLE", "DECIMAL"}
)  # fmt: skip
DATE_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")


def _q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _no_progress(step: str, done: int, total: int) -> None:
    return None


def releases(project_dir: Path) -> list[int]:
    """Numbers of the published releases of a project, ascending."""
    folder = project_dir / "releases"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def current_release(project_dir: Path) -> int | None:
    link = project_dir / "current"
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link)).name
    return int(target) if target.isdigit() else None


def read_manifest(project_dir: Path, release: int | None = None) -> dict[str, Any] | None:
    number = current_release(project_dir) if release is None else release
    if number is None:
        return None
    path = project_dir / "releases" / str(number) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@contextlib.contextmanager
def project_lock(project_dir: Path) -> Iterator[None]:
    """One provisioning per project at a time (a second one waits); not re-entrant."""
    project_dir.mkdir(parents=True, exist_ok=True)
    with open(project_dir / ".provision.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Build:
    """One build of one release, in its own in-memory DuckDB."""

    def __init__(self, spec: ReleaseSpec, build_dir: Path) -> None:
        self.spec = spec
        self.dir = build_dir
        self.con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        # DuckDB spills beside the build (same disk), never into the release itself.
        self.spill = build_dir.parent / f"{build_dir.name}.spill"
        self.con.execute(f"SET temp_directory = {_lit(str(self.spill))}")
        self.con.execute("SET preserve_insertion_order = false")  # lets joins and writes run in parallel
        self.schemas: dict[tuple[str, str], dict[str, str]] = {}
        self.rows_in = 0
        # What the manifest says about opt-outs and text dates (counts and names only, no values).
        self.optout_facts: dict[str, Any] = {}
        self.text_dates: list[str] = []
        self.bounds: dict[str, list[float]] = {}
        # One key for comparing identifiers however a source stored them: text or number, spaces or
        # hyphens inside, leading zeros, a float's ".0" (`9434765919.0` = `943 476 5919` = `0943476591 9`).
        self.con.execute(
            "CREATE TEMP MACRO id_key(v) AS nullif(ltrim(regexp_replace("
            "replace(replace(replace(replace(upper(CAST(v AS VARCHAR)), ' ', ''), '-', ''), chr(9), ''), "
            "chr(160), ''), '\\.0+$', ''), '0'), '')"
        )

    # --- sources -------------------------------------------------------------------------------
    def _reader(self, table: SourceTable, where: str) -> str:
        if table.format not in ("parquet", "csv"):
            raise ProvisioningError(
                f"{where}: unsupported source format {table.format!r}; use parquet or csv"
            )
        # Identifiers stay text: a number type would drop leading zeros and change pseudonyms.
        text_cols = {c for c in (table.identifier_column, *table.pseudonymise) if c}
        try:
            # The registry's reader (same dialect), so the schema checked is the one registered.
            return source_relation(table.path, text_cols)[1]
        except RegistryError as exc:
            raise ProvisioningError(f"{where}: {exc}") from None

    def check_source(self, dataset: str, table: SourceTable) -> None:
        where = f"{dataset}/{table.name}"
        path = table.path
        if not path.exists():
            raise ProvisioningError(
                f"{where}: source file {path} not found; restore it or re-register the dataset"
            )
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ProvisioningError(
                f"{where}: source file {path} is not a readable file; check its permissions"
            )
        if table.content_hash is not None:
            try:
                digest = "sha256:" + file_sha256(path)
            except OSError as exc:
                raise ProvisioningError(f"{where}: cannot read {path}: {exc.strerror}") from exc
            if digest != table.content_hash:
                raise ProvisioningError(
                    f"{where}: source file {path} changed since it was registered (sha256 differs); "
                    "register it as a new dataset version and have the grant re-approved"
                )
        try:
            reader = self._reader(table, where)
            described = self.con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
            # Parquet: from the footer. CSV: a full parse, so a bad row far down is blamed on its file.
            self.rows_in += self.con.execute(f"SELECT count(*) FROM {reader}").fetchone()[0]
        except duckdb.Error as exc:
            raise ProvisioningError(
                f"{where}: cannot read {path} as {table.format}: {_first_line(exc)}; fix or replace the file"
            ) from exc
        schema = {row[0]: str(row[1]).upper() for row in described}
        if table.expected_schema is not None:
            expected = {k: v.upper() for k, v in table.expected_schema.items()}
            forced = {table.identifier_column, *table.pseudonymise}
            missing = sorted(set(expected) - set(schema))
            extra = sorted(set(schema) - set(expected))
            retyped = sorted(
                c for c in expected.keys() & schema.keys() if c not in forced and expected[c] != schema[c]
            )
            if missing or extra or retyped:
                parts = [
                    f"{label} {', '.join(cols)}"
                    for label, cols in (("missing", missing), ("new", extra), ("type changed", retyped))
                    if cols
                ]
                raise ProvisioningError(
                    f"{where}: schema of {path} changed since registration ({'; '.join(parts)}); "
                    "register it as a new dataset version"
                )
        needed = {*table.columns, *table.pseudonymise}
        if table.identifier_column:
            needed.add(table.identifier_column)
        unknown = sorted(needed - set(schema))
        if unknown:
            raise ProvisioningError(
                f"{where}: columns {', '.join(unknown)} are not in {path}; "
                "correct the grant or the registration"
            )
        if table.identifier_column in table.columns and table.identifier_column not in table.pseudonymise:
            raise ProvisioningError(
                f"{where}: identifier column {table.identifier_column} is approved but not pseudonymised; "
                "add it to the grant's pseudonymised columns"
            )
        self.schemas[dataset, table.name] = schema

    def check_unique(self, dataset: str, table: SourceTable) -> None:
        if not (table.unique_identifier and table.identifier_column):
            return
        col = _q(table.identifier_column)
        dupes = self.con.execute(
            f"SELECT count(*) FROM (SELECT {col} FROM {self._reader(table, '')} "
            f"WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1)"
        ).fetchone()[0]
        if dupes:
            # The count only: an error message must not carry identifiers into logs.
            raise ProvisioningError(
                f"{dataset}/{table.name}: {dupes} identifiers in {table.identifier_column} occur more "
                f"than once in {table.path}; de-duplicate the source and register it again"
            )

    # --- transformation ------------------------------------------------------------------------
    def load_optouts(self) -> None:
        self.con.execute("CREATE TEMP TABLE optout (key VARCHAR)")
        for optout in self.spec.optouts:
            where = f"opt-out list {optout.name}"
            if not optout.identifier_column:
                raise ProvisioningError(f"{where}: no identifier column registered; register it with one")
            self.check_source("optout", optout)
            ident = _q(optout.identifier_column)
            self.con.execute(
                f"INSERT INTO optout SELECT DISTINCT id_key({ident}) "
                f"FROM {self._reader(optout, where)} WHERE id_key({ident}) IS NOT NULL"
            )
        entries = self.con.execute("SELECT count(DISTINCT key) FROM optout").fetchone()[0]
        self.optout_facts = {"lists": [o.name for o in self.spec.optouts], "entries": int(entries)}

    def pseudonymise(self, key: bytes) -> None:
        values = [
            f"SELECT CAST({_q(col)} AS VARCHAR) AS value FROM {self._reader(t, '')}"
            for ds in self.spec.datasets
            for t in ds.tables
            for col in sorted({*t.pseudonymise, *([t.identifier_column] if t.identifier_column else [])})
        ]
        if not values:
            values = ["SELECT NULL::VARCHAR AS value"]
        try:
            create_pseudonym_table(self.con, key, " UNION ALL ".join(values), "pmap")
        except ValueError as exc:
            raise ProvisioningError(
                f"{exc}; the build was stopped, report this to the platform team"
            ) from exc
        self.con.execute(
            "CREATE TEMP TABLE pmap_kept AS "
            "SELECT p.* FROM pmap AS p ANTI JOIN optout AS o ON o.key = id_key(p.value)"
        )
        everyone, kept = self.con.execute(
            "SELECT (SELECT count(*) FROM pmap), (SELECT count(*) FROM pmap_kept)"
        ).fetchone()
        self.optout_facts["identifiers_matched"] = int(everyone - kept)

    def write_table(self, ds: DatasetSpec, table: SourceTable, out: Path) -> int:
        schema = self.schemas[ds.name, table.name]
        ident = table.identifier_column
        joins: list[str] = []
        if ident:
            src_id = f"CAST(src.{_q(ident)} AS VARCHAR)"
            if ds.remove_opted_out:
                # One inner join both removes opted-out people and rows without an identifier (whose
                # opt-out cannot be checked) and fetches the pseudonym: cheaper than two joins.
                joins.append(f"JOIN pmap_kept AS p_id ON p_id.value = {src_id}")
            else:
                joins.append(f"LEFT JOIN pmap AS p_id ON p_id.value = {src_id}")
        elif ds.remove_opted_out:
            # The documented rule: a table registered without a person identifier is reference data
            # (a code list, a lookup); opt-outs cannot apply to it, and the manifest names it.
            self.optout_facts.setdefault("tables_without_identifier", []).append(f"{ds.name}/{table.name}")
        shift = ds.date_shift_days if ident else None
        select: list[str] = []
        for col in table.columns:
            ref = f"src.{_q(col)}"
            ctype = schema[col]
            if col in table.pseudonymise:
                if col == ident:
                    select.append(f"p_id.pseudonym AS {_q(col)}")
                else:
                    alias = f"p_{len(joins)}"
                    joins.append(f"LEFT JOIN pmap AS {alias} ON {alias}.value = CAST({ref} AS VARCHAR)")
                    select.append(f"{alias}.pseudonym AS {_q(col)}")
            elif ds.age_band_years and col == ds.birth_date_column:
                if ctype not in DATE_TYPES:  # never fall through to releasing it as it is
                    raise ProvisioningError(
                        f"{ds.name}/{table.name}: birth date column {col} is {ctype}, not a date, so it "
                        "cannot be banded; register the source with a date column"
                    )
                select.append(f"{self._age_band(ref, ds.age_band_years)} AS age_band")
            elif shift and ctype in DATE_TYPES:
                offset = f"(p_id.shift_seed % {2 * shift + 1})::INTEGER - {shift}"
                expr = f"{ref} + {offset}" if ctype == "DATE" else f"{ref} + to_days({offset})"
                select.append(f"{expr} AS {_q(col)}")
            elif shift and ctype == "VARCHAR" and (as_dates := self._text_dates(ds, table, col)):
                # Dates stored as text move like any other date (and come out as dates).
                offset = f"(p_id.shift_seed % {2 * shift + 1})::INTEGER - {shift}"
                expr, timed = as_dates
                select.append(f"{expr} + {f'to_days({offset})' if timed else offset} AS {_q(col)}")
            else:
                select.append(f"{ref} AS {_q(col)}")
        query = f"SELECT {', '.join(select)} FROM {self._reader(table, '')} AS src {' '.join(joins)}"
        out.parent.mkdir(parents=True, exist_ok=True)
        # zstd level 1: measured ~15% less CPU than the default level 3 for ~1% larger files
        # (random pseudonyms dominate the size and do not compress at any level).
        written = self.con.execute(
            f"COPY ({query}) TO {_lit(str(out))} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)"
        ).fetchone()[0]
        self._record_bounds(ds, table, out, schema)
        return int(written)

    def _record_bounds(self, ds: DatasetSpec, table: SourceTable, out: Path, schema: dict[str, str]) -> None:
        """Each released numeric column's smallest and largest value, for the disclosure checks: a mean
        of many values that all lie within known bounds can be shown not to be dominated by one."""
        numeric = [
            c
            for c in table.columns
            if c not in table.pseudonymise and schema.get(c, "").split("(")[0] in NUMERIC_TYPES
        ]
        if not numeric:
            return
        # The Parquet statistics DuckDB just wrote hold each row group's extremes: no second scan.
        stats = {
            name: (low, high, complete)
            for name, low, high, complete in self.con.execute(
                "SELECT path_in_schema, min(TRY_CAST(stats_min_value AS DOUBLE)), "
                "max(TRY_CAST(stats_max_value AS DOUBLE)), bool_and(stats_min_value IS NOT NULL) "
                f"FROM parquet_metadata({_lit(str(out))}) GROUP BY path_in_schema"
            ).fetchall()
        }
        for col in numeric:
            low, high, complete = stats.get(col, (None, None, False))
            if not complete:  # a row group without statistics: read the column itself
                low, high = self.con.execute(
                    f"SELECT min({_q(col)}), max({_q(col)}) FROM read_parquet({_lit(str(out))})"
                ).fetchone()
            if low is not None and high is not None:
                self.bounds[f"{ds.name}/{table.name}/{col}"] = [float(low), float(high)]

    def _text_dates(self, ds: DatasetSpec, table: SourceTable, col: str) -> tuple[str, bool] | None:
        """(SQL reading the text column as dates, whether they carry a time), or None: no dates in it.

        A column where any value reads as a date in a known layout is a date column: every value
        must then read in one layout, or the build stops naming the column (a date released
        unshifted would undo the shift for everyone else)."""
        value = f"nullif(trim(src.{_q(col)}), '')"
        # Every layout below starts with a digit: one cheap pass rules out codes, names and labels.
        digit_led = self.con.execute(
            f"SELECT count(*) FILTER (WHERE left({value}, 1) BETWEEN '0' AND '9') "
            f"FROM {self._reader(table, '')} AS src"
        ).fetchone()[0]
        if not digit_led:
            return None
        layouts = [
            (f"TRY_CAST({value} AS DATE)", False),
            (f"TRY_CAST({value} AS TIMESTAMP)", True),
            *((f"CAST(TRY_STRPTIME({value}, {_lit(fmt)}) AS DATE)", False) for fmt in TEXT_DATE_FORMATS),
        ]
        counts = self.con.execute(
            f"SELECT count({value}), {', '.join(f'count({expr})' for expr, _ in layouts)} "
            f"FROM {self._reader(table, '')} AS src"
        ).fetchone()
        values, parsed = counts[0], counts[1:]
        if not values or not any(parsed):
            return None
        for layout, n in zip(layouts, parsed, strict=True):
            if n == values:
                self.text_dates.append(f"{ds.name}/{table.name}/{col}")
                return layout
        raise ProvisioningError(
            f"{ds.name}/{table.name}: column {col} holds dates stored as text, but {values - max(parsed)} of "
            f"its {values} values are not dates in one layout, so they cannot be shifted; clean the column, "
            "or leave it out of the grant"
        )

    def _age_band(self, ref: str, years: int) -> str:
        reference = self.spec.reference_date or datetime.now(UTC).date()
        age = f"datesub('year', {ref}, DATE {_lit(reference.isoformat())})"
        low = f"(floor({age} / {years}) * {years})::INTEGER"
        # Open-ended top band: very old ages are rare enough to identify people.
        band = f"{low}::VARCHAR || '-' || ({low} + {years - 1})::VARCHAR"
        return f"CASE WHEN {age} >= 90 THEN '90+' ELSE {band} END"

    # --- catalogue -----------------------------------------------------------------------------
    def write_catalog(self, tables: list[tuple[str, str]]) -> None:
        path = self.dir / CATALOG_FILE
        con = duckdb.connect(":memory:")
        try:
            # Views bind at creation: resolve their relative paths against this build.
            con.execute(f"SET file_search_path = {_lit(str(self.dir))}")
            con.execute(f"ATTACH {_lit(str(path))} AS cat (STORAGE_VERSION {_lit(CATALOG_STORAGE_VERSION)})")
            for dataset in sorted({d for d, _ in tables}):
                con.execute(f"CREATE SCHEMA cat.{_q(dataset)}")
            for dataset, table in tables:
                rel = f"data/{dataset}/{table}.parquet"
                con.execute(
                    f"CREATE VIEW cat.{_q(dataset)}.{_q(table)} AS SELECT * FROM read_parquet({_lit(rel)})"
                )
            con.execute("DETACH cat")
        finally:
            con.close()

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.spill, ignore_errors=True)


def _validate(spec: ReleaseSpec) -> None:
    if not NAME_RE.match(spec.project):
        raise ProvisioningError(f"invalid project slug {spec.project!r}")
    seen: set[str] = set()
    for ds in spec.datasets:
        if not NAME_RE.match(ds.name):
            raise ProvisioningError(
                f"invalid dataset name {ds.name!r}: use lower-case letters, digits, - and _"
            )
        if ds.name in seen:
            raise ProvisioningError(f"dataset {ds.name} is granted twice to {spec.project}; revoke one grant")
        seen.add(ds.name)
        if ds.age_band_years not in (None, 5, 10):
            raise ProvisioningError(f"{ds.name}: age bands must be 5 or 10 years wide")
        if ds.age_band_years and not ds.birth_date_column:
            raise ProvisioningError(f"{ds.name}: age bands need the dataset's birth date column")
        if ds.date_shift_days is not None and not 0 <= ds.date_shift_days <= 3650:
            raise ProvisioningError(f"{ds.name}: date shift must be between 0 and 3650 days")
        names = [t.name for t in ds.tables]
        for name in names:
            if not NAME_RE.match(name):
                raise ProvisioningError(f"{ds.name}: invalid table name {name!r}")
        if len(set(names)) != len(names):
            raise ProvisioningError(f"{ds.name}: a table is listed twice")


def _released_columns(ds: DatasetSpec, table: SourceTable) -> list[str]:
    return ["age_band" if ds.age_band_years and c == ds.birth_date_column else c for c in table.columns]


def exposure(spec: ReleaseSpec) -> list[str]:
    """What a release discloses, as comparable items.

    A new release that lacks an item of the previous one (a revoked grant, a dropped column, dates
    now shifted, opt-outs now removed, or a changed opt-out list) must purge the older releases.
    """
    items = {f"optout:{t.content_hash or t.path}" for t in spec.optouts}
    for ds in spec.datasets:
        if not ds.remove_opted_out:
            items.add(f"{ds.name}:opted-out-kept")
        if not ds.date_shift_days:
            items.add(f"{ds.name}:dates-unshifted")
        for t in ds.tables:
            items.update(
                f"{ds.name}/{t.name}/{c}" for c in _released_columns(ds, t) if c not in t.pseudonymise
            )
    return sorted(items)


def _manifest(
    spec: ReleaseSpec,
    release: int,
    build_dir: Path,
    written: dict[tuple[str, str], int],
    built_at: str,
    facts: dict[str, Any],
) -> dict[str, Any]:
    files = []
    for path in sorted(p for p in build_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(build_dir).as_posix()
        entry: dict[str, Any] = {"path": rel, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
        parts = rel.split("/")
        if parts[0] == "data" and len(parts) == 3:
            entry["rows"] = written[parts[1], parts[2].removesuffix(".parquet")]
        files.append(entry)
    return {
        "project": spec.project,
        "release": release,
        "built_at": built_at,
        "duckdb_version": duckdb.__version__,
        "catalog": {
            "file": CATALOG_FILE,
            "storage_version": CATALOG_STORAGE_VERSION,
            "view_paths": "relative to the release root: SET file_search_path to where it is mounted",
        },
        "datasets": [
            {
                "name": ds.name,
                "version": ds.version,
                "remove_opted_out": ds.remove_opted_out,
                "age_band_years": ds.age_band_years,
                "date_shift_days": ds.date_shift_days,
                "tables": [
                    {
                        "name": t.name,
                        "columns": _released_columns(ds, t),
                        "pseudonymised": list(t.pseudonymise),
                        "rows": written[ds.name, t.name],
                    }
                    for t in ds.tables
                ],
            }
            for ds in spec.datasets
        ],
        "grants": [ds.grant for ds in spec.datasets if ds.grant],
        "exposure": exposure(spec),
        **facts,
        "files": files,
    }


def _swap_current(project_dir: Path, release: int) -> None:
    tmp = project_dir / f".current.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"releases/{release}", tmp)
    os.replace(tmp, project_dir / "current")  # rename(2): readers see the old or the new, never none
    _fsync(project_dir)


def _prune(project_dir: Path, keep_from: int, purge: bool, keep: int) -> tuple[int, ...]:
    published = [n for n in releases(project_dir) if n != keep_from]
    doomed = published if purge else published[: max(0, len(published) - max(keep - 1, 0))]
    for n in doomed:
        shutil.rmtree(project_dir / "releases" / str(n))
    return tuple(doomed)


def build_release(
    project_dir: Path, spec: ReleaseSpec, progress: StepCallback | None = None
) -> ReleaseResult:
    """Build `spec` beside the live release, publish it atomically, prune old releases.

    Raises ProvisioningError (one-line message) on any failure; then the previous release is
    still current and untouched, and no partial build is left behind.
    """
    with project_lock(project_dir):
        return publish_release(project_dir, spec, progress)


def publish_release(
    project_dir: Path, spec: ReleaseSpec, progress: StepCallback | None = None
) -> ReleaseResult:
    """`build_release` for a caller that already holds `project_lock(project_dir)`."""
    progress = progress or _no_progress
    _validate(spec)
    started = time.perf_counter()
    releases_dir = project_dir / "releases"
    releases_dir.mkdir(parents=True, exist_ok=True)
    for stale in releases_dir.glob(".build-*"):  # a crashed build: nobody is using it
        shutil.rmtree(stale, ignore_errors=True)
    existing = releases(project_dir)
    number = spec.release if spec.release is not None else max(existing, default=0) + 1
    if number in existing:
        raise ProvisioningError(f"release {number} of {spec.project} already exists; use a new number")
    build_dir = releases_dir / f".build-{number}"
    final = releases_dir / str(number)
    build_dir.mkdir()
    build: _Build | None = None
    published = False
    try:
        build = _Build(spec, build_dir)
        tables = [(ds, t) for ds in spec.datasets for t in ds.tables]
        total = len(tables) + 3
        progress("checking sources", 0, total)
        build.load_optouts()
        for ds, t in tables:
            build.check_source(ds.name, t)
        for ds, t in tables:
            build.check_unique(ds.name, t)
        progress("pseudonymising", 1, total)
        build.pseudonymise(project_key(spec.master_key, spec.project))
        written: dict[tuple[str, str], int] = {}
        for i, (ds, t) in enumerate(tables):
            progress(f"writing {ds.name}/{t.name}", 2 + i, total)
            out = build_dir / "data" / ds.name / f"{t.name}.parquet"
            try:
                written[ds.name, t.name] = build.write_table(ds, t, out)
            except duckdb.Error as exc:  # e.g. a bad row deep in a CSV, past the sniffed sample
                raise ProvisioningError(
                    f"{ds.name}/{t.name}: reading {t.path} failed: {_first_line(exc)}; fix the source file"
                ) from exc
        progress("writing catalogue", 2 + len(tables), total)
        build.write_catalog([(ds.name, t.name) for ds, t in tables])
        built_at = datetime.now(UTC).isoformat(timespec="seconds")
        facts = {"optout": build.optout_facts, "text_dates_shifted": build.text_dates, "bounds": build.bounds}
        manifest = _manifest(spec, number, build_dir, written, built_at, facts)
        (build_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        for path in sorted(build_dir.rglob("*"), reverse=True):  # files before their folders
            _fsync(path)
        _fsync(build_dir)
        progress("publishing", total, total)
        os.rename(build_dir, final)
        _fsync(releases_dir)
        _swap_current(project_dir, number)
        published = True
    except ProvisioningError:
        raise
    except (duckdb.Error, OSError) as exc:
        raise ProvisioningError(
            f"building release {number} of {spec.project} failed: {_first_line(exc)}"
        ) from exc
    finally:
        if build is not None:
            build.close()
        if not published:
            shutil.rmtree(build_dir, ignore_errors=True)
            if current_release(project_dir) != number:
                shutil.rmtree(final, ignore_errors=True)
    deleted = _prune(project_dir, number, spec.purge, spec.keep)
    return ReleaseResult(
        project=spec.project,
        release=number,
        path=final,
        rows_in=build.rows_in,
        rows_out=sum(written.values()),
        seconds=time.perf_counter() - started,
        deleted_releases=deleted,
        manifest=manifest,
    )
