"""Provisioning end to end: generate data, build releases, then prove what a workspace would see.

The proof runs in a separate process (this file run as a script) against the release made
read-only, the way a workspace mounts it: it opens catalog.duckdb read-only and reports the views,
their columns and pseudonyms, and every raw identifier it finds in the bytes of every file.
When the tests run as root, that process loses the capabilities that bypass file permissions, so
"read-only" is enforced, not assumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

# Root bypasses file modes; without these capabilities it is bound by them like anyone else.
DROP_PERMISSION_BYPASS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable"]
DIGIT_RUN = re.compile(rb"\d{10,}")
IDENTIFIER_COLUMNS = ("nhs_number", "national_id")  # demo data, registry fixtures


def raw_identifier_hits(data: bytes, raw: set[bytes]) -> set[bytes]:
    """Raw 10-digit identifiers anywhere in `data`, also inside longer digit runs."""
    hits: set[bytes] = set()
    for run in DIGIT_RUN.findall(data):
        hits.update(w for i in range(len(run) - 9) if (w := run[i : i + 10]) in raw)
    return hits


def scan_release(release: Path, raw: set[bytes]) -> dict[str, list[str]]:
    """Raw identifiers per file: in the file's bytes and, for Parquet, in its decoded values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found: dict[str, list[str]] = {}
    for path in sorted(p for p in release.rglob("*") if p.is_file()):
        hits = raw_identifier_hits(path.read_bytes(), raw)
        if path.suffix == ".parquet":  # compressed pages hide bytes: look at the values too
            for column in pq.read_table(path).columns:
                if pa.types.is_dictionary(column.type):
                    column = column.cast(pa.string())
                if pa.types.is_string(column.type) or pa.types.is_integer(column.type):
                    text = "\n".join(str(v) for v in column.to_pylist() if v is not None)
                    hits |= raw_identifier_hits(text.encode(), raw)
        if hits:
            found[str(path.relative_to(release))] = sorted(h.decode() for h in hits)
    return found


def inspect_release(release: Path, raw_ids_file: Path) -> dict:
    """What a workspace sees (run in the separate, read-only process)."""
    import duckdb

    raw = set(raw_ids_file.read_bytes().split())
    report: dict = {"views": {}, "rows": {}, "pseudonyms": {}}
    try:
        (release / "probe").write_text("x")
        report["write_blocked"] = False
    except OSError:
        report["write_blocked"] = True
    con = duckdb.connect(str(release / "catalog.duckdb"), read_only=True)
    con.execute("SET file_search_path = '" + str(release).replace("'", "''") + "'")
    report["storage_version"] = con.execute(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = 'catalog'"
    ).fetchone()[0]
    views = con.execute(
        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
    ).fetchall()
    for schema, view in views:
        name = f'"{schema}"."{view}"'
        report["views"][f"{schema}.{view}"] = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        report["rows"][f"{schema}.{view}"] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        for ident in set(IDENTIFIER_COLUMNS) & set(report["views"][f"{schema}.{view}"]):
            report["pseudonyms"][f"{schema}.{view}"] = sorted(
                r[0] for r in con.execute(f"SELECT DISTINCT {ident} FROM {name}").fetchall()
            )
    con.close()
    report["raw_identifiers"] = scan_release(release, raw)
    report["files"] = sorted(str(p.relative_to(release)) for p in release.rglob("*") if p.is_file())
    return report


if __name__ == "__main__":  # the separate process: python test_provisioning.py RELEASE RAW_IDS
    print(json.dumps(inspect_release(Path(sys.argv[1]), Path(sys.argv[2]))))
    sys.exit(0)


import duckdb  # noqa: E402  (the script above needs only the standard library to start)

from hub.demo.data import TABLES, generate  # noqa: E402
from hub.provisioning import (  # noqa: E402
    DatasetSpec,
    ProvisioningError,
    ReleaseSpec,
    SourceTable,
    build_release,
    current_release,
    releases,
)
from hub.provisioning.pseudonym import project_key, pseudonym  # noqa: E402

MASTER = b"integration-test-master-key-0123456789"
PATIENTS = 4_000
SHIFT = 30
REFERENCE = date(2026, 1, 1)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("provisioning")


@pytest.fixture(scope="module")
def demo(base: Path):
    return generate(base / "source", patients=PATIENTS, seed=11)


@pytest.fixture(scope="module")
def raw_ids(demo, base: Path) -> tuple[Path, set[str], set[str]]:
    """Every raw identifier in the sources (file for the checker), and the opted-out ones."""
    ids: set[str] = set()
    for dataset, tables in TABLES.items():
        for table in tables:
            path = demo.path(dataset, table)
            ids |= {
                r[0] for r in duckdb.connect().execute(f"SELECT DISTINCT nhs_number FROM '{path}'").fetchall()
            }
    opted = {
        r[0]
        for r in duckdb.connect()
        .execute(f"SELECT nhs_number FROM '{demo.path('optout', 'optout')}'")
        .fetchall()
    }
    out = base / "raw_ids.txt"
    out.write_text("\n".join(sorted(ids)) + "\n")
    return out, ids, opted


def approved(dataset: str, table: str) -> tuple[str, ...]:
    """The columns these tests approve: everything except the postcode district."""
    return tuple(c for c in TABLES[dataset][table] if c != "postcode_district")


def dataset_spec(demo, name: str, *, age: int | None = None, shift: int | None = None, **over) -> DatasetSpec:
    tables = tuple(
        SourceTable(
            name=t,
            path=demo.path(name, t),
            columns=approved(name, t),
            identifier_column="nhs_number",
            pseudonymise=tuple(c for c in ("nhs_number", "tumour_id") if c in cols),
            unique_identifier=t == "patients",
        )
        for t, cols in TABLES[name].items()
    )
    return DatasetSpec(
        name=name,
        tables=tables,
        age_band_years=age,
        birth_date_column="birth_date",
        date_shift_days=shift,
        grant={"id": f"g-{name}"},
        **over,
    )


def release_spec(demo, project: str, *datasets: DatasetSpec, **over) -> ReleaseSpec:
    optout = SourceTable(name="optout", path=demo.path("optout", "optout"), identifier_column="nhs_number")
    return ReleaseSpec(
        project=project,
        datasets=datasets,
        master_key=MASTER,
        optouts=(optout,),
        reference_date=REFERENCE,
        **over,
    )


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def check_in_separate_process(release: Path, raw_ids_file: Path) -> dict:
    """Make the release read-only (chmod -R a-w), then inspect it from another process."""
    release = release.resolve()
    for p in [release, *release.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    prefix = DROP_PERMISSION_BYPASS if os.geteuid() == 0 else []
    proc = subprocess.run(
        [*prefix, sys.executable, __file__, str(release), str(raw_ids_file)],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def alpha(demo, base: Path):
    """Project alpha: diabetes (age bands, date shift) and oncology."""
    spec = release_spec(
        demo, "alpha", dataset_spec(demo, "diabetes", age=5, shift=SHIFT), dataset_spec(demo, "oncology")
    )
    return build_release(base / "projects" / "alpha", spec)


@pytest.fixture(scope="module")
def alpha_view(alpha, raw_ids):
    return check_in_separate_process(alpha.path, raw_ids[0])


def test_scanner_finds_planted_identifiers(demo, raw_ids):
    """The byte scan is only proof if it would catch a leak: it must flag the raw sources."""
    _, ids, _ = raw_ids
    raw = {i.encode() for i in ids}
    found = scan_release(demo.out_dir, raw)
    assert "diabetes/patients.parquet" in found and "optout/optout.parquet" in found
    assert raw_identifier_hits(b"xx19434765919yy", {b"9434765919"}) == {b"9434765919"}


def test_only_approved_columns(alpha_view):
    assert alpha_view["write_blocked"], "the release must be read-only for the workspace process"
    expected = {}
    for dataset in ("diabetes", "oncology"):
        for table in TABLES[dataset]:
            cols = list(approved(dataset, table))
            if dataset == "diabetes" and table == "patients":
                cols[cols.index("birth_date")] = "age_band"
            expected[f"{dataset}.{table}"] = cols
    assert alpha_view["views"] == expected
    assert sorted(alpha_view["files"]) == sorted(
        ["catalog.duckdb", "manifest.json"]
        + [f"data/{d}/{t}.parquet" for d in ("diabetes", "oncology") for t in TABLES[d]]
    )


def test_catalogue_storage_version_is_pinned(alpha_view):
    from hub.provisioning import CATALOG_STORAGE_VERSION

    assert alpha_view["storage_version"] == CATALOG_STORAGE_VERSION + "+"


def test_old_releases_are_pruned(demo, tmp_path):
    project = tmp_path / "pruned"
    spec = release_spec(demo, "pruned", dataset_spec(demo, "oncology"), keep=2)
    numbers = [build_release(project, spec).release for _ in range(3)]
    assert releases(project) == numbers[1:] and current_release(project) == numbers[2]


def test_no_raw_identifier_anywhere(alpha_view):
    assert alpha_view["raw_identifiers"] == {}
    for pseudonyms in alpha_view["pseudonyms"].values():
        assert all(re.fullmatch(r"[0-9a-f]{16}", p) for p in pseudonyms)


def test_no_opted_out_patient(alpha_view, raw_ids):
    _, ids, opted = raw_ids
    key = project_key(MASTER, "alpha")
    opted_pseudonyms = {pseudonym(key, i) for i in opted}
    kept_pseudonyms = {pseudonym(key, i) for i in ids - opted}
    for view, pseudonyms in alpha_view["pseudonyms"].items():
        assert not opted_pseudonyms & set(pseudonyms), view
        assert set(pseudonyms) <= kept_pseudonyms, view
    assert alpha_view["rows"]["diabetes.patients"] == PATIENTS - len(opted & set(ids_of_patients(raw_ids)))


def ids_of_patients(raw_ids) -> list[str]:
    path = Path(raw_ids[0]).parent / "source" / "diabetes" / "patients.parquet"
    return [r[0] for r in duckdb.connect().execute(f"SELECT nhs_number FROM '{path}'").fetchall()]


def test_pseudonyms_consistent_within_project_and_differ_across(alpha, alpha_view, demo, base, raw_ids):
    views = alpha_view["pseudonyms"]
    patients = set(views["diabetes.patients"])
    assert set(views["diabetes.hba1c"]) <= patients
    assert set(views["oncology.tumours"]) & patients  # the registries link through the pseudonym
    # A rebuild of the same project gives the same pseudonyms.
    again = build_release(
        base / "projects" / "alpha-again", release_spec(demo, "alpha", dataset_spec(demo, "diabetes"))
    )
    again_view = check_in_separate_process(again.path, raw_ids[0])
    assert set(again_view["pseudonyms"]["diabetes.patients"]) == patients
    # Another project: same people, unrelated pseudonyms.
    beta = build_release(
        base / "projects" / "beta", release_spec(demo, "beta", dataset_spec(demo, "diabetes"))
    )
    beta_view = check_in_separate_process(beta.path, raw_ids[0])
    assert len(beta_view["pseudonyms"]["diabetes.patients"]) == len(patients)
    assert not set(beta_view["pseudonyms"]["diabetes.patients"]) & patients


def test_age_bands_and_consistent_date_shift(alpha, demo, raw_ids):
    import pyarrow as pa

    key = project_key(MASTER, "alpha")
    ids = sorted(raw_ids[1])
    con = duckdb.connect()
    con.register("m", pa.table({"nhs_number": ids, "pid": [pseudonym(key, i) for i in ids]}))
    raw, out = demo.out_dir / "diabetes", alpha.path / "data" / "diabetes"
    people = con.execute(
        f"""SELECT m.pid, r.birth_date, o.age_band, o.diagnosis_date - r.diagnosis_date AS shift
            FROM '{raw / "patients.parquet"}' r JOIN m USING (nhs_number)
            JOIN '{out / "patients.parquet"}' o ON o.nhs_number = m.pid"""
    ).fetchall()
    assert len(people) > PATIENTS * 0.9
    for _, birth, band, _ in people:
        age = REFERENCE.year - birth.year - ((REFERENCE.month, REFERENCE.day) < (birth.month, birth.day))
        assert band == ("90+" if age >= 90 else f"{age // 5 * 5}-{age // 5 * 5 + 4}")
    shifts = [row[3] for row in people]
    assert min(shifts) >= -SHIFT and max(shifts) <= SHIFT and len(set(shifts)) > 2 * SHIFT * 0.8
    con.execute(
        "CREATE TABLE shift AS SELECT pid, shift FROM (VALUES "
        + ",".join(f"('{pid}', {shift})" for pid, _, _, shift in people)
        + ") v(pid, shift)"
    )
    # Every HbA1c date of a person moved by that person's one offset.
    total, same = con.execute(
        f"""WITH r AS (SELECT pid, list_sort(list(h.test_date + s.shift::INTEGER)) AS d
                       FROM '{raw / "hba1c.parquet"}' h JOIN m USING (nhs_number) JOIN shift s USING (pid)
                       GROUP BY pid),
                 o AS (SELECT nhs_number AS pid, list_sort(list(test_date)) AS d
                       FROM '{out / "hba1c.parquet"}' GROUP BY pid)
            SELECT count(*), count(*) FILTER (WHERE r.d = o.d) FROM r JOIN o USING (pid)"""
    ).fetchone()
    assert total > PATIENTS * 0.8 and same == total


def test_revoked_grant_files_are_gone(demo, base, raw_ids):
    project = base / "projects" / "gamma"
    both = release_spec(demo, "gamma", dataset_spec(demo, "diabetes"), dataset_spec(demo, "oncology"))
    first = build_release(project, both)
    build_release(project, both)
    assert releases(project) == [first.release, first.release + 1]
    revoked = build_release(project, release_spec(demo, "gamma", dataset_spec(demo, "diabetes"), purge=True))
    assert set(revoked.deleted_releases) == {first.release, first.release + 1}
    assert releases(project) == [revoked.release] and current_release(project) == revoked.release
    assert not [p for p in project.rglob("*") if "oncology" in p.name]
    view = check_in_separate_process(project / "current", raw_ids[0])
    assert not [v for v in view["views"] if v.startswith("oncology.")]
    assert not [f for f in view["files"] if "oncology" in f]
    manifest = json.loads((project / "current" / "manifest.json").read_text())
    assert [d["name"] for d in manifest["datasets"]] == ["diabetes"]
    # Closing the project: an empty release, nothing older kept.
    closed = build_release(project, release_spec(demo, "gamma", purge=True))
    assert releases(project) == [closed.release]
    assert sorted(p.name for p in (project / "current").iterdir()) == ["catalog.duckdb", "manifest.json"]


def test_manifest_lists_every_file_with_hash_and_rows(alpha):
    manifest = json.loads((alpha.path / "manifest.json").read_text())
    assert manifest["release"] == alpha.release and manifest["built_at"].endswith("+00:00")
    listed = {f["path"]: f for f in manifest["files"]}
    actual = {str(p.relative_to(alpha.path)) for p in alpha.path.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(listed) == actual
    for rel, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256((alpha.path / rel).read_bytes()).hexdigest()
    assert listed["data/diabetes/hba1c.parquet"]["rows"] > PATIENTS
    assert manifest["grants"] == [{"id": "g-diabetes"}, {"id": "g-oncology"}]


# --- failures leave the previous release current and no partial state ------------------------------


@pytest.fixture
def published(demo, tmp_path):
    project = tmp_path / "delta"
    result = build_release(project, release_spec(demo, "delta", dataset_spec(demo, "diabetes")))
    return project, result.release, tree_digest(project / "releases")


def assert_unchanged(project: Path, number: int, digest: dict[str, str]) -> None:
    assert current_release(project) == number
    assert tree_digest(project / "releases") == digest
    assert [p.name for p in (project / "releases").iterdir()] == [str(number)]
    assert sorted(p.name for p in project.iterdir()) == [".provision.lock", "current", "releases"]


def broken_copy(demo, tmp_path: Path, how: str) -> Path:
    """A copy of the oncology source folder with tumours.parquet broken in one way."""
    folder = tmp_path / f"oncology-{how}"
    shutil.copytree(demo.out_dir / "oncology", folder)
    target = folder / "tumours.parquet"
    if how == "missing":
        target.unlink()
    elif how == "malformed":
        target.write_bytes(b"PAR1 this is not a parquet file PAR1")
    elif how == "directory":
        target.unlink()
        target.mkdir()
    elif how == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    return folder


def oncology_from(demo, folder: Path, **table_over) -> DatasetSpec:
    spec = dataset_spec(demo, "oncology")
    tables = tuple(
        SourceTable(**{**t.__dict__, "path": folder / f"{t.name}.parquet", **table_over.get(t.name, {})})
        for t in spec.tables
    )
    return DatasetSpec(name="oncology", tables=tables)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", r"oncology/tumours: source file .* not found; restore it or re-register"),
        ("malformed", r"oncology/tumours: cannot read .* as parquet: .*; fix or replace the file"),
        ("truncated", r"oncology/tumours: cannot read .* as parquet"),
        ("directory", r"oncology/tumours: source file .* is not a readable file"),
    ],
)
def test_bad_source_fails_cleanly(demo, tmp_path, published, how, message):
    project, number, digest = published
    folder = broken_copy(demo, tmp_path, how)
    spec = release_spec(demo, "delta", dataset_spec(demo, "diabetes"), oncology_from(demo, folder))
    with pytest.raises(ProvisioningError, match=message) as err:
        build_release(project, spec)
    assert "\n" not in str(err.value)
    assert_unchanged(project, number, digest)


def test_malformed_csv_row_fails_cleanly(demo, tmp_path, published):
    """A ragged row far past the CSV sniffer's sample is blamed on its file; nothing is published."""
    project, number, digest = published
    csv = tmp_path / "labs.csv"
    lines = ["nhs_number,test_date,value"] + [f"{9000000000 + i},2020-01-01,{i % 90}" for i in range(40_000)]
    lines.insert(30_000, "9000000001,2020-01-01,55,extra")
    csv.write_text("\n".join(lines) + "\n")
    table = SourceTable(
        name="labs",
        path=csv,
        format="csv",
        columns=("nhs_number", "value"),
        identifier_column="nhs_number",
        pseudonymise=("nhs_number",),
    )
    spec = release_spec(demo, "delta", DatasetSpec(name="labs", tables=(table,)))
    with pytest.raises(
        ProvisioningError,
        match=r"^labs/labs: cannot read .*labs.csv as csv: .*Line: 30001.*; fix or replace the file$",
    ):
        build_release(project, spec)
    assert_unchanged(project, number, digest)


def test_age_bands_refuse_a_birth_date_that_is_not_a_date(demo, tmp_path, published):
    project, number, digest = published
    csv = tmp_path / "people.csv"
    csv.write_text("nhs_number,birth_date\n9000000001,1950-01-01\n9000000002,unknown\n")
    table = SourceTable(
        name="people",
        path=csv,
        format="csv",
        columns=("nhs_number", "birth_date"),
        identifier_column="nhs_number",
        pseudonymise=("nhs_number",),
    )
    ds = DatasetSpec(name="people", tables=(table,), age_band_years=10, birth_date_column="birth_date")
    with pytest.raises(ProvisioningError, match="birth date column birth_date is VARCHAR, not a date"):
        build_release(project, release_spec(demo, "delta", ds))
    assert_unchanged(project, number, digest)


def test_changed_schema_and_content_fail(demo, tmp_path, published):
    project, number, digest = published
    folder = tmp_path / "oncology-changed"
    shutil.copytree(demo.out_dir / "oncology", folder)
    registered = {"tumour_id": "VARCHAR", "nhs_number": "VARCHAR", "stage": "VARCHAR", "grade": "INTEGER"}
    spec = release_spec(demo, "delta", oncology_from(demo, folder, tumours={"expected_schema": registered}))
    with pytest.raises(
        ProvisioningError, match=r"schema of .* changed since registration \(missing grade; new "
    ):
        build_release(project, spec)
    assert_unchanged(project, number, digest)
    spec = release_spec(
        demo, "delta", oncology_from(demo, folder, tumours={"content_hash": "sha256:" + "0" * 64})
    )
    with pytest.raises(ProvisioningError, match="changed since it was registered"):
        build_release(project, spec)
    assert_unchanged(project, number, digest)


def test_duplicate_identifiers_fail_without_leaking_them(demo, tmp_path, published):
    project, number, digest = published
    folder = tmp_path / "diabetes-dupes"
    shutil.copytree(demo.out_dir / "diabetes", folder)
    patients = folder / "patients.parquet"
    with_dupes = f"SELECT * FROM '{patients}' UNION ALL (SELECT * FROM '{patients}' LIMIT 3)"
    duckdb.connect().execute(f"COPY ({with_dupes}) TO '{folder / 'p2.parquet'}'")
    (folder / "p2.parquet").replace(patients)
    spec = dataset_spec(demo, "diabetes")
    tables = tuple(SourceTable(**{**t.__dict__, "path": folder / f"{t.name}.parquet"}) for t in spec.tables)
    with pytest.raises(ProvisioningError, match=r"3 identifiers in nhs_number occur more than once") as err:
        build_release(project, release_spec(demo, "delta", DatasetSpec(name="diabetes", tables=tables)))
    assert not re.search(r"\d{10}", str(err.value))
    assert_unchanged(project, number, digest)


def test_unapproved_identifier_and_unknown_columns_fail(demo, published):
    project, number, digest = published
    spec = dataset_spec(demo, "oncology")
    no_pseudonym = tuple(SourceTable(**{**t.__dict__, "pseudonymise": ()}) for t in spec.tables)
    with pytest.raises(
        ProvisioningError, match="identifier column nhs_number is approved but not pseudonymised"
    ):
        build_release(project, release_spec(demo, "delta", DatasetSpec(name="oncology", tables=no_pseudonym)))
    unknown = tuple(SourceTable(**{**t.__dict__, "columns": (*t.columns, "ethnicity")}) for t in spec.tables)
    with pytest.raises(ProvisioningError, match="columns ethnicity are not in"):
        build_release(project, release_spec(demo, "delta", DatasetSpec(name="oncology", tables=unknown)))
    assert_unchanged(project, number, digest)


def test_failure_at_publish_leaves_previous_current(demo, published, monkeypatch):
    """Even after the new release is complete and renamed, a failed switch rolls it back."""
    import hub.provisioning.builder as builder

    project, number, digest = published

    def broken_swap(project_dir: Path, release: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(builder, "_swap_current", broken_swap)
    spec = release_spec(demo, "delta", dataset_spec(demo, "diabetes"), dataset_spec(demo, "oncology"))
    with pytest.raises(ProvisioningError, match="No space left on device"):
        build_release(project, spec)
    assert_unchanged(project, number, digest)


# --- through the registry: grants in, audited releases out ------------------------------------------


@pytest.fixture
def world(registry, make_users, demo):
    """The demo datasets registered, project `onco-diab` with approved diabetes + oncology grants."""
    from hub import registry as reg
    from hub.kernel.db import session_scope
    from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, future

    make_users()
    with session_scope(registry) as s:
        for name in ("diabetes", "oncology", "optout"):
            reg.register_dataset(
                s,
                CUSTODIAN,
                name,
                [reg.SourceFile(t, demo.path(name, t)) for t in TABLES[name]],
                "nhs_number",
                kind="optout" if name == "optout" else "cohort",
            )
        reg.create_project(s, ADMIN, "onco-diab", "Cancer in diabetes", LEAD, future())
        grants = {}
        for name in ("diabetes", "oncology"):
            columns = {t: list(approved(name, t)) for t in TABLES[name]}
            grant = reg.request_grant(
                s,
                LEAD,
                "onco-diab",
                name,
                columns,
                pseudonymise=["tumour_id"] if name == "oncology" else [],
                age_bands=name == "diabetes",
                date_shift_days=SHIFT,
            )
            reg.decide_grant(s, CUSTODIAN, grant.id, approve=True)
            grants[name] = grant.id
    return registry, grants


def provision(settings, actor: str = "custodian"):
    from hub.provisioning import provision_project

    steps: list[str] = []
    result = provision_project(settings, "onco-diab", actor, progress=lambda step, d, t: steps.append(step))
    assert steps[0] == "checking sources" and steps[-1] == "publishing"
    return result


def audit_events(settings, action: str) -> list:
    from sqlalchemy import select

    from hub.kernel.audit import AuditEvent
    from hub.kernel.db import session_scope

    with session_scope(settings) as s:
        rows = s.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return [(e.object_id, e.details) for e in rows.scalars()]


def test_registry_provision_revoke_close(world, raw_ids):
    from hub import registry as reg
    from hub.kernel import audit
    from hub.kernel.db import session_scope
    from tests.fixtures_registry import ADMIN, CUSTODIAN

    settings, grants = world
    project_dir = settings.project_dir("onco-diab")
    first = provision(settings)
    view = check_in_separate_process(settings.current_release("onco-diab"), raw_ids[0])
    assert view["raw_identifiers"] == {}
    assert "age_band" in view["views"]["diabetes.patients"]
    assert "birth_date" in view["views"]["oncology.patients"]  # no age bands in that grant
    assert {v.split(".")[0] for v in view["views"]} == {"diabetes", "oncology"}
    assert (settings.keys_dir / "pseudonym.key").stat().st_mode & 0o077 == 0
    second = provision(settings)
    assert releases(project_dir) == [first.release, second.release]
    # Same key, same project: the same pseudonyms in the new release.
    again = check_in_separate_process(settings.current_release("onco-diab"), raw_ids[0])
    assert again["pseudonyms"] == view["pseudonyms"]

    with session_scope(settings) as s:
        reg.revoke_grant(s, CUSTODIAN, grants["oncology"], reason="study protocol changed")
    revoked = provision(settings)
    assert set(revoked.deleted_releases) == {first.release, second.release}
    assert releases(project_dir) == [revoked.release]
    assert not [p for p in project_dir.rglob("*") if "oncology" in p.name]
    view = check_in_separate_process(settings.current_release("onco-diab"), raw_ids[0])
    assert {v.split(".")[0] for v in view["views"]} == {"diabetes"}
    deleted = audit_events(settings, "release.delete")
    assert deleted[-1][0] == "onco-diab" and deleted[-1][1]["reason"] == "data withdrawn"
    assert sorted(deleted[-1][1]["releases"]) == [first.release, second.release]
    assert any(w.startswith("oncology/") for w in deleted[-1][1]["withdrawn"])

    with session_scope(settings) as s:
        reg.change_project_status(s, ADMIN, "onco-diab", "close", "finished")
    closed = provision(settings)
    assert releases(project_dir) == [closed.release]
    assert sorted(p.name for p in settings.current_release("onco-diab").iterdir()) == [
        "catalog.duckdb",
        "manifest.json",
    ]
    assert audit_events(settings, "release.delete")[-1][1]["reason"] == "project not open"
    assert [e[1]["release"] for e in audit_events(settings, "project.provision")] == [
        first.release,
        second.release,
        revoked.release,
        closed.release,
    ]
    with session_scope(settings) as s:
        assert audit.verify(s).ok


def test_withdrawal_operations_purge_whoever_calls_them(world):
    """Revoking or closing through hub.enforcement (the CLI and the portal both do) deletes the old
    data at once: no caller has to remember to re-provision."""
    from hub.enforcement import close_project, revoke_grant
    from tests.fixtures_registry import ADMIN, CUSTODIAN

    settings, grants = world
    project_dir = settings.project_dir("onco-diab")
    first = provision(settings)
    withdrawal = revoke_grant(settings, CUSTODIAN, grants["oncology"], "consent withdrawn")
    assert withdrawal.release is not None and withdrawal.release.deleted_releases == (first.release,)
    assert releases(project_dir) == [withdrawal.release.release]
    assert not [p for p in project_dir.rglob("*") if "oncology" in p.name]
    closed = close_project(settings, ADMIN, "onco-diab", "finished")
    assert releases(project_dir) == [closed.release.release]
    assert sorted(p.name for p in settings.current_release("onco-diab").iterdir()) == [
        "catalog.duckdb",
        "manifest.json",
    ]
    assert audit_events(settings, "release.delete")[-1][1]["reason"] == "project not open"


def test_registry_stays_writable_while_a_release_builds(world):
    """A build must not hold the registry's write lock: spawns, logins and reviews write meanwhile."""
    import time

    from hub.kernel import audit
    from hub.kernel.db import session_scope
    from hub.provisioning import provision_project

    settings, _ = world
    waited: list[float] = []

    def write_during_build(step: str, done: int, total: int) -> None:
        if step == "pseudonymising":
            started = time.perf_counter()
            with session_scope(settings) as s:
                audit.record(s, "someone", "user.add", "test", "during-build", {})
            waited.append(time.perf_counter() - started)

    provision_project(settings, "onco-diab", "custodian", progress=write_during_build)
    assert waited and waited[0] < 2, f"a registry write waited {waited}s for the provisioning build"


def test_registry_changed_source_fails_without_partial_state(world, demo, tmp_path):
    """A source edited after registration is refused; the published release stays current."""
    settings, _ = world
    project_dir = settings.project_dir("onco-diab")
    first = provision(settings)
    digest = tree_digest(project_dir / "releases")
    target = demo.path("oncology", "treatments")
    saved = tmp_path / "treatments.parquet"
    shutil.copy2(target, saved)
    try:
        duckdb.connect().execute(f"COPY (SELECT * FROM '{saved}' LIMIT 10) TO '{target}' (FORMAT parquet)")
        with pytest.raises(ProvisioningError, match="changed since it was registered"):
            provision(settings)
    finally:
        shutil.copy2(saved, target)
    assert current_release(project_dir) == first.release
    assert tree_digest(project_dir / "releases") == digest
    assert [e[1]["release"] for e in audit_events(settings, "project.provision")] == [first.release]


def test_registry_provision_needs_a_custodian(world):
    from hub.registry.permissions import NotAllowed

    settings, _ = world
    with pytest.raises(NotAllowed):
        provision(settings, actor="researcher")
    assert not settings.project_dir("onco-diab").exists()


def test_registry_csv_sources(registry, make_world, tmp_path, raw_ids):
    """CSV sources as the registry scans them: identifiers stay text, opt-outs from a CSV list."""
    from hub import registry as reg
    from hub.kernel.db import session_scope
    from tests.fixtures_registry import CUSTODIAN, write_optout

    world = make_world(n=50)
    optout = write_optout(tmp_path / "optout", ["9000000003", "9000000007"])
    with session_scope(registry) as s:
        reg.register_dataset(
            s, CUSTODIAN, "national-optout", [reg.SourceFile("optout", optout)], "national_id", kind="optout"
        )
    result = provision_project_for(registry, world.project)
    release = registry.current_release(world.project)
    raw_file = tmp_path / "raw.txt"
    raw_file.write_text("\n".join(f"{9000000000 + i:010d}" for i in range(50)) + "\n")
    view = check_in_separate_process(release, raw_file)
    assert view["raw_identifiers"] == {}
    assert view["rows"]["diabetes.patients"] == 48 == result.manifest["datasets"][0]["tables"][0]["rows"]
    key = project_key((registry.keys_dir / "pseudonym.key").read_bytes(), world.project)
    assert pseudonym(key, "9000000003") not in view["pseudonyms"]["diabetes.patients"]
    assert pseudonym(key, "9000000004") in view["pseudonyms"]["diabetes.patients"]
    assert view["views"]["diabetes.labs"] == ["national_id", "hba1c"]


def provision_project_for(settings, slug: str):
    from hub.provisioning import provision_project

    return provision_project(settings, slug, "custodian")


def test_a_lead_who_closes_her_project_deletes_its_data_too(world):
    """A lead may close her own project (not provision it): the closing build, which only deletes,
    runs in her name; she still cannot provision it open."""
    from hub.enforcement import close_project
    from hub.provisioning import provision_project
    from hub.registry import NotAllowed
    from tests.fixtures_registry import LEAD

    settings, _ = world
    project_dir = settings.project_dir("onco-diab")
    provision(settings)
    with pytest.raises(NotAllowed, match="only an administrator or data custodian"):
        provision_project(settings, "onco-diab", LEAD)
    closed = close_project(settings, LEAD, "onco-diab", "study finished")
    assert releases(project_dir) == [closed.release.release]
    assert sorted(p.name for p in settings.current_release("onco-diab").iterdir()) == [
        "catalog.duckdb",
        "manifest.json",
    ]
