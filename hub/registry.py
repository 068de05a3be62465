"""Registry operations: every state change checks the rules, changes rows and writes its audit event in
the caller's transaction, so a change and its record commit (or vanish) together.

Callers (the CLI, the demo, the hub) open a `hub.db.session_scope()` and call these functions; any
RegistryError or NotAllowed leaves the transaction to be rolled back, so nothing is half-written.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import audit
from hub.access import DEFAULT_LIMITS, roles_in
from hub.models import (
    DATASET_KINDS,
    SENSITIVITIES,
    Dataset,
    Grant,
    Membership,
    Project,
    User,
    is_slug,
)
from hub.permissions import Action, Actor, NotAllowed, ProjectState, check

MAX_DATE_SHIFT_DAYS = 3650
MEM_RE = re.compile(r"^[1-9][0-9]*[kmg]$")
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


class RegistryError(Exception):
    """Bad input or a missing object; the message says what to do next."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def require_aware(value: datetime, option: str = "--expires") -> datetime:
    if value.tzinfo is None:
        raise RegistryError(f"{option} must be a timezone-aware time (UTC), not {value.isoformat()}")
    return value


def require_slug(kind: str, value: str) -> str:
    if not is_slug(value):
        raise RegistryError(
            f"invalid {kind} name {value!r}: use 3-40 lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    return value


# ---------------------------------------------------------------------------------------------------
# Look-ups


def find_user(session: Session, username: str) -> User | None:
    return session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise RegistryError(f"no user called {username!r}; an administrator can add one with `tre user add`")
    return user


def get_project(session: Session, slug: str) -> Project:
    project = session.execute(select(Project).where(Project.slug == slug)).scalar_one_or_none()
    if project is None:
        raise RegistryError(f"no project called {slug!r}; see `tre project list`")
    return project


def get_dataset(session: Session, ref: str) -> Dataset:
    """A dataset by `name` (latest version) or `name:version`."""
    name, _, version = ref.partition(":")
    query = select(Dataset).where(Dataset.name == name)
    if version:
        if not version.isdigit():
            raise RegistryError(f"invalid dataset version in {ref!r}: use NAME or NAME:NUMBER")
        query = query.where(Dataset.version == int(version))
    dataset = session.execute(query.order_by(Dataset.version.desc()).limit(1)).scalar_one_or_none()
    if dataset is None:
        raise RegistryError(f"no dataset {ref!r}; see `tre dataset list`")
    return dataset


def get_grant(session: Session, grant_id: str) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise RegistryError(f"no grant {grant_id!r}; see `tre grant list`")
    return grant


def _actor(session: Session, username: str, project: Project | None = None) -> tuple[User, Actor]:
    user = find_user(session, username)
    if user is None:
        raise NotAllowed(
            f"{username!r} is not a registered user; run as one with --as NAME or TRE_ACTOR=NAME"
        )
    roles = frozenset(roles_in(session, user, project)) if project is not None else frozenset()
    return user, Actor(user.username, user.is_admin, user.is_custodian, user.disabled, roles)


def _state(project: Project) -> ProjectState:
    return ProjectState(project.slug, project.status, project.expires_at)


# ---------------------------------------------------------------------------------------------------
# Users


def add_user(
    session: Session,
    actor: str,
    username: str,
    display_name: str = "",
    *,
    is_admin: bool = False,
    is_custodian: bool = False,
) -> User:
    """Create a registry user. The very first user (bootstrap) must be an administrator."""
    require_slug("user", username)
    bootstrap = session.execute(select(func.count(User.id))).scalar_one() == 0
    if bootstrap:
        if not is_admin:
            raise RegistryError(
                "the registry has no users yet: the first user must be an administrator (--admin)"
            )
    else:
        _, who = _actor(session, actor)
        check(Action.ADD_USER, who, target=username)
        if (is_admin or is_custodian) and username == actor:
            raise NotAllowed(f"{actor} cannot appoint themselves; another administrator must do it")
    if find_user(session, username) is not None:
        raise RegistryError(f"user {username!r} already exists; see `tre user list`")
    user = User(username=username, display_name=display_name, is_admin=is_admin, is_custodian=is_custodian)
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user.add",
        "user",
        username,
        {
            "display_name": display_name,
            "is_admin": is_admin,
            "is_custodian": is_custodian,
            "bootstrap": bootstrap,
        },
    )
    return user


def set_user_disabled(session: Session, actor: str, username: str, disabled: bool) -> User:
    _, who = _actor(session, actor)
    check(Action.DISABLE_USER, who, target=username)
    user = get_user(session, username)
    if user.disabled == disabled:
        return user
    user.disabled = disabled
    audit.record(session, actor, "user.disable" if disabled else "user.enable", "user", username)
    return user


def set_user_role(session: Session, actor: str, username: str, role: str, on: bool = True) -> User:
    """Give (or take away, with on=False) the global role "admin" or "custodian"."""
    if role not in ("admin", "custodian"):
        raise RegistryError(
            f"unknown role {role!r}: use admin or custodian (project roles: `tre project member`)"
        )
    _, who = _actor(session, actor)
    check(Action.GRANT_ROLE, who, target=username)
    user = get_user(session, username)
    setattr(user, "is_admin" if role == "admin" else "is_custodian", on)
    audit.record(session, actor, "user.role", "user", username, {"role": role, "on": on})
    return user


# ---------------------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True)
class SourceTable:
    name: str
    path: Path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


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


def _default_sensitivity(column: str, col_type: str, identifier: str) -> str:
    if column == identifier:
        return "identifier"
    if QUASI_RE.search(column.lower()) or col_type in ("DATE", "TIMESTAMP"):
        return "quasi-identifier"
    if _coding_system(column):
        return "sensitive"
    return "other"


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
        "content_hash": _file_sha256(path),
    }


def _person_facts(con: Any, table: dict[str, Any], identifier: str) -> tuple[int, dict[str, Any]]:
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


def _parse_overrides(
    pairs: Mapping[str, str], allowed: Iterable[str] | None, what: str
) -> dict[str, dict[str, str]]:
    """{"[table.]column": value} -> {table or "*": {column: value}}, validating values."""
    allowed_set = set(allowed) if allowed is not None else None
    out: dict[str, dict[str, str]] = {}
    for key, value in pairs.items():
        if allowed_set is not None and value not in allowed_set:
            raise RegistryError(
                f"unknown {what} {value!r} for {key}: use one of {', '.join(sorted(allowed_set))}"
            )
        table, _, column = key.rpartition(".")
        out.setdefault(table or "*", {})[column] = value
    return out


def _carry_labels(
    previous: Dataset,
    specs: list[dict[str, Any]],
    sensitivity: Mapping[str, Mapping[str, str]],
    coding: Mapping[str, Mapping[str, str]],
) -> None:
    """Keep the custodian's labels from the previous version for columns not relabelled this time."""
    for spec in specs:
        old_table = previous.table(spec["name"])
        if old_table is None:
            continue
        old = {c["name"]: c for c in old_table["columns"]}
        given_sens = {**sensitivity.get("*", {}), **sensitivity.get(spec["name"], {})}
        given_code = {**coding.get("*", {}), **coding.get(spec["name"], {})}
        for col in spec["columns"]:
            before = old.get(col["name"])
            if before is None:
                continue
            if col["name"] not in given_sens:
                col["sensitivity"] = before["sensitivity"]
            if col["name"] not in given_code:
                col.pop("coding_system", None)
                if "coding_system" in before:
                    col["coding_system"] = before["coding_system"]


def register_dataset(
    session: Session,
    actor: str,
    name: str,
    tables: list[SourceTable],
    identifier_column: str,
    *,
    kind: str = "cohort",
    title: str | None = None,
    description: str | None = None,
    person_table: str | None = None,
    sensitivity: Mapping[str, str] | None = None,
    coding: Mapping[str, str] | None = None,
) -> tuple[Dataset, bool]:
    """Register sources as dataset `name`: a new version when anything changed, else the existing one.

    Returns (dataset, created). `sensitivity` and `coding` override the name-based defaults, keyed by
    "column" or "table.column".
    """
    import duckdb

    custodian, who = _actor(session, actor)
    check(Action.REGISTER_DATASET, who)
    require_slug("dataset", name)
    if kind not in DATASET_KINDS:
        raise RegistryError(f"unknown dataset kind {kind!r}: use cohort or optout")
    if not tables:
        raise RegistryError("give at least one --table NAME=PATH")
    table_names = [t.name for t in tables]
    if len(set(table_names)) != len(table_names):
        raise RegistryError("each --table name may be given only once")
    person = person_table or tables[0].name
    if person not in table_names:
        raise RegistryError(f"person table {person!r} is not one of the tables: {', '.join(table_names)}")
    sens = _parse_overrides(sensitivity or {}, SENSITIVITIES, "sensitivity")
    codes = _parse_overrides(coding or {}, None, "coding system")

    con = duckdb.connect()
    try:
        specs = []
        for src in tables:
            spec = scan_table(
                con, src.name, src.path, identifier_column, {**sens.get("*", {}), **sens.get(src.name, {})}
            )
            for column, system in {**codes.get("*", {}), **codes.get(src.name, {})}.items():
                col = next((c for c in spec["columns"] if c["name"] == column), None)
                if col is None:
                    raise RegistryError(
                        f"--coding names column {column!r}, which table {src.name!r} does not have"
                    )
                col["coding_system"] = system
            specs.append(spec)
        for key_table, mapping in sens.items():
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
        unique_individuals, profile = _person_facts(con, person_spec, identifier_column)
    finally:
        con.close()

    content_hash = (
        "sha256:"
        + hashlib.sha256("\n".join(f"{s['name']}={s['content_hash']}" for s in specs).encode()).hexdigest()
    )
    latest = session.execute(
        select(Dataset).where(Dataset.name == name).order_by(Dataset.version.desc()).limit(1)
    ).scalar_one_or_none()
    if latest is not None:
        if latest.kind != kind:
            raise RegistryError(
                f"dataset {name} is registered as {latest.kind}; register a {kind} under another name"
            )
        _carry_labels(latest, specs, sens, codes)
        unchanged = (
            latest.content_hash == content_hash
            and latest.identifier_column == identifier_column
            and latest.person_table == person
            and [t["columns"] for t in latest.tables] == [s["columns"] for s in specs]
        )
        if unchanged:
            return latest, False
    dataset = Dataset(
        name=name,
        version=(latest.version + 1) if latest else 1,
        title=title if title is not None else (latest.title if latest else name),
        description=description if description is not None else (latest.description if latest else ""),
        kind=kind,
        custodian_id=custodian.id,
        tables=specs,
        identifier_column=identifier_column,
        person_table=person,
        row_count=sum(s["row_count"] for s in specs),
        unique_individuals=unique_individuals,
        profile=profile,
        content_hash=content_hash,
    )
    session.add(dataset)
    session.flush()
    audit.record(
        session,
        actor,
        "dataset.register",
        "dataset",
        dataset.ref,
        {
            "kind": kind,
            "content_hash": content_hash,
            "tables": {s["name"]: {"source": s["source"], "rows": s["row_count"]} for s in specs},
            "previous_version": latest.version if latest else None,
        },
    )
    return dataset, True


def verify_dataset_sources(dataset: Dataset) -> None:
    """Raise RegistryError if any registered source file is gone or no longer what was registered."""
    for table in dataset.tables:
        path = Path(table["source"])
        if not path.is_file():
            raise RegistryError(
                f"source {path} of {dataset.ref} table {table['name']!r} is missing; restore it or "
                "re-register the dataset"
            )
        if _file_sha256(path) != table["content_hash"]:
            raise RegistryError(
                f"source {path} of {dataset.ref} table {table['name']!r} changed since registration "
                f"(schema or content); re-register it with `tre dataset add {dataset.name} ...`"
            )


# ---------------------------------------------------------------------------------------------------
# Projects and memberships


def _validate_limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in limits.items():
        if value is None:
            continue
        if key == "mem":
            if not MEM_RE.match(str(value).lower()):
                raise RegistryError(f"invalid memory limit {value!r}: use a number with k, m or g, e.g. 4g")
            out["mem"] = str(value).lower()
        elif key == "cpu":
            if not 0 < float(value) <= 64:
                raise RegistryError(f"invalid cpu limit {value!r}: use a number of cores between 0 and 64")
            out["cpu"] = float(value)
        elif key == "pids":
            if not 16 <= int(value) <= 65536:
                raise RegistryError(f"invalid pids limit {value!r}: use a whole number between 16 and 65536")
            out["pids"] = int(value)
        else:
            raise RegistryError(f"unknown limit {key!r}: use {', '.join(DEFAULT_LIMITS)}")
    return out


def create_project(
    session: Session,
    actor: str,
    slug: str,
    title: str,
    lead: str,
    expires_at: datetime,
    purpose: str = "",
    limits: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Project:
    require_slug("project", slug)
    creator, who = _actor(session, actor)
    check(Action.CREATE_PROJECT, who, target=lead)
    if require_aware(expires_at) <= (now or now_utc()):
        raise RegistryError(f"expiry date {expires_at:%Y-%m-%d} is in the past; give a future --expires date")
    lead_user = get_user(session, lead)
    if lead_user.disabled:
        raise RegistryError(f"user {lead} is disabled and cannot lead a project")
    if session.execute(select(Project.id).where(Project.slug == slug)).first():
        raise RegistryError(f"project {slug!r} already exists; see `tre project show {slug}`")
    project = Project(
        slug=slug,
        title=title,
        purpose=purpose,
        lead_id=lead_user.id,
        expires_at=expires_at,
        limits=_validate_limits(limits or {}) or None,
    )
    session.add(project)
    session.flush()
    session.add(Membership(user_id=lead_user.id, project_id=project.id, role="lead", added_by_id=creator.id))
    session.flush()
    audit.record(
        session,
        actor,
        "project.create",
        "project",
        slug,
        {"title": title, "lead": lead, "expires_at": expires_at.isoformat(), "limits": project.limits},
    )
    return project


# change: (statuses it applies to, resulting status, past tense for messages)
STATUS_TRANSITIONS = {
    "suspend": ({"active"}, "suspended", "suspended"),
    "resume": ({"suspended"}, "active", "resumed"),
    "close": ({"active", "suspended"}, "closed", "closed"),
}


def change_project_status(session: Session, actor: str, slug: str, change: str, reason: str = "") -> Project:
    """suspend (active -> suspended), resume (suspended -> active) or close (-> closed, final)."""
    if change not in STATUS_TRANSITIONS:
        raise RegistryError(f"unknown status change {change!r}: use suspend, resume or close")
    project = get_project(session, slug)
    _, who = _actor(session, actor, project)
    check(Action.CHANGE_PROJECT_STATUS, who)
    sources, target, done = STATUS_TRANSITIONS[change]
    if project.status not in sources:
        raise RegistryError(f"project {slug} is {project.status} and cannot be {done}")
    previous = project.status
    project.status = target
    audit.record(session, actor, f"project.{change}", "project", slug, {"from": previous, "reason": reason})
    return project


def set_project_limits(session: Session, actor: str, slug: str, **limits: Any) -> Project:
    project = get_project(session, slug)
    _, who = _actor(session, actor, project)
    check(Action.SET_LIMITS, who)
    clean = _validate_limits(limits)
    if not clean:
        raise RegistryError("give at least one of --mem, --cpu, --pids")
    project.limits = {**(project.limits or {}), **clean}
    audit.record(session, actor, "project.limits", "project", slug, {"limits": project.limits})
    return project


def set_project_sdc_rules(
    session: Session, actor: str, slug: str, overrides: Mapping[str, Any], reset: bool = False
) -> Project:
    """Override the project's disclosure-check defaults (merged with earlier overrides unless reset)."""
    from egress.sdc.model import RuleConfig

    project = get_project(session, slug)
    _, who = _actor(session, actor, project)
    check(Action.SET_SDC_RULES, who)
    merged = {**({} if reset else project.sdc_config or {}), **overrides}
    try:
        RuleConfig.from_dict(merged)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{exc}; see `tre project sdc-rules --help`") from None
    project.sdc_config = merged or None
    audit.record(session, actor, "project.sdc_rules", "project", slug, {"sdc_config": merged})
    return project


def _membership(session: Session, user: User, project: Project, role: str) -> Membership | None:
    return session.execute(
        select(Membership).where(
            Membership.user_id == user.id, Membership.project_id == project.id, Membership.role == role
        )
    ).scalar_one_or_none()


def add_member(
    session: Session,
    actor: str,
    slug: str,
    username: str,
    role: str = "researcher",
    now: datetime | None = None,
) -> Membership:
    """Add a researcher (by the lead or an admin) or a checker (by an admin or custodian)."""
    if role not in ("researcher", "checker"):
        raise RegistryError(
            f"cannot add a {role!r}: members are researcher or checker (the lead is set at creation)"
        )
    project = get_project(session, slug)
    adder, who = _actor(session, actor, project)
    action = Action.ADD_RESEARCHER if role == "researcher" else Action.ASSIGN_CHECKER
    check(action, who, project=_state(project), target=username, now=now)
    user = get_user(session, username)
    if user.disabled:
        raise RegistryError(f"user {username} is disabled; an administrator must re-enable the account first")
    if _membership(session, user, project, role) is not None:
        raise RegistryError(f"{username} is already a {role} on {slug}")
    membership = Membership(user_id=user.id, project_id=project.id, role=role, added_by_id=adder.id)
    session.add(membership)
    session.flush()
    audit.record(
        session,
        actor,
        "member.add" if role == "researcher" else "checker.assign",
        "project",
        slug,
        {"user": username, "role": role},
    )
    return membership


def remove_member(session: Session, actor: str, slug: str, username: str, role: str = "researcher") -> None:
    if role not in ("researcher", "checker"):
        raise RegistryError(f"cannot remove a {role!r}: members are researcher or checker")
    project = get_project(session, slug)
    _, who = _actor(session, actor, project)
    check(
        Action.REMOVE_RESEARCHER if role == "researcher" else Action.REMOVE_CHECKER,
        who,
        project=_state(project),
    )
    user = get_user(session, username)
    membership = _membership(session, user, project, role)
    if membership is None:
        raise RegistryError(f"{username} is not a {role} on {slug}; see `tre project show {slug}`")
    session.delete(membership)
    session.flush()
    audit.record(
        session,
        actor,
        "member.remove" if role == "researcher" else "checker.remove",
        "project",
        slug,
        {"user": username, "role": role},
    )


# ---------------------------------------------------------------------------------------------------
# Grants


def _check_columns(dataset: Dataset, columns: Mapping[str, list[str]]) -> dict[str, list[str]]:
    if not columns:
        raise RegistryError("a grant needs at least one table: --columns TABLE=COL1,COL2 (or TABLE=*)")
    out: dict[str, list[str]] = {}
    for table, cols in columns.items():
        known = dataset.column_names(table)
        if not known:
            names = ", ".join(t["name"] for t in dataset.tables)
            raise RegistryError(f"{dataset.ref} has no table {table!r}; its tables are: {names}")
        wanted = known if cols == ["*"] else cols
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise RegistryError(
                f"{dataset.ref} table {table!r} has no column(s) {', '.join(unknown)}; "
                f"see `tre dataset show {dataset.name}`"
            )
        if not wanted or len(set(wanted)) != len(wanted):
            raise RegistryError(f"give each column of table {table!r} once, and at least one")
        out[table] = list(wanted)
    return out


def request_grant(
    session: Session,
    actor: str,
    slug: str,
    dataset_ref: str,
    columns: Mapping[str, list[str]],
    *,
    expires_at: datetime | None = None,
    remove_opted_out: bool = True,
    pseudonymise: Iterable[str] = (),
    age_bands: bool = False,
    date_shift_days: int | None = None,
    note: str = "",
    now: datetime | None = None,
) -> Grant:
    """Ask for a dataset version's columns for a project. Identifier columns are always pseudonymised;
    `pseudonymise` adds "table.column" (or "column" for every table) to that."""
    now = now or now_utc()
    project = get_project(session, slug)
    requester, who = _actor(session, actor, project)
    check(Action.REQUEST_GRANT, who, project=_state(project), now=now)
    dataset = get_dataset(session, dataset_ref)
    if dataset.kind != "cohort":
        raise RegistryError(f"{dataset.ref} is an opt-out list, not research data; it cannot be granted")
    approved = _check_columns(dataset, columns)
    expires_at = require_aware(expires_at) if expires_at else project.expires_at
    if expires_at <= now:
        raise RegistryError(f"expiry date {expires_at:%Y-%m-%d} is in the past; give a future --expires date")
    if expires_at > project.expires_at:
        raise RegistryError(
            f"a grant cannot outlast its project ({slug} expires {project.expires_at:%Y-%m-%d}); "
            "give an earlier --expires"
        )
    if date_shift_days is not None and not 1 <= date_shift_days <= MAX_DATE_SHIFT_DAYS:
        raise RegistryError(f"--date-shift-days must be between 1 and {MAX_DATE_SHIFT_DAYS}")
    pseudo: dict[str, list[str]] = {}
    for table, cols in approved.items():
        if dataset.identifier_column in cols:
            pseudo[table] = [dataset.identifier_column]
    for item in pseudonymise:
        table, _, column = item.rpartition(".")
        targets = [table] if table else [t for t, cols in approved.items() if column in cols]
        if not targets or any(column not in approved.get(t, []) for t in targets):
            raise RegistryError(f"--pseudonymise {item}: that column is not among the requested columns")
        for t in targets:
            if column not in pseudo.setdefault(t, []):
                pseudo[t].append(column)
    if age_bands:
        birth = dataset.profile.get("birth_date_column")
        if not birth or birth not in approved.get(dataset.person_table, []):
            raise RegistryError(
                "--age-bands needs the birth date column of the person table among the columns"
            )
    grant = Grant(
        project_id=project.id,
        dataset_id=dataset.id,
        columns=approved,
        remove_opted_out=remove_opted_out,
        pseudonymise=pseudo,
        age_bands=age_bands,
        date_shift_days=date_shift_days,
        expires_at=expires_at,
        status="requested",
        requested_by_id=requester.id,
        requested_at=now,
        note=note,
    )
    session.add(grant)
    session.flush()
    audit.record(
        session,
        actor,
        "grant.request",
        "grant",
        grant.id,
        {
            "project": slug,
            "dataset": dataset.ref,
            "columns": approved,
            "pseudonymise": pseudo,
            "remove_opted_out": remove_opted_out,
            "age_bands": age_bands,
            "date_shift_days": date_shift_days,
            "expires_at": expires_at.isoformat(),
        },
    )
    return grant


def decide_grant(
    session: Session, actor: str, grant_id: str, approve: bool, note: str = "", now: datetime | None = None
) -> Grant:
    now = now or now_utc()
    grant = get_grant(session, grant_id)
    project = grant.project
    decider, who = _actor(session, actor, project)
    check(
        Action.APPROVE_GRANT if approve else Action.REJECT_GRANT,
        who,
        project=_state(project),
        requested_by=grant.requested_by.username,
        now=now,
    )
    if grant.status != "requested":
        raise RegistryError(f"grant {grant_id} is {grant.status}; only a requested grant can be decided")
    if approve and grant.expires_at <= now:
        raise RegistryError(
            f"grant {grant_id} expired on {grant.expires_at:%Y-%m-%d}; the lead must request again"
        )
    grant.status = "approved" if approve else "rejected"
    grant.approved_by_id = decider.id
    grant.approved_at = now
    if note:
        grant.note = (grant.note + "\n" if grant.note else "") + note
    audit.record(
        session,
        actor,
        "grant.approve" if approve else "grant.reject",
        "grant",
        grant.id,
        {"project": project.slug, "dataset": grant.dataset.ref, "note": note},
    )
    return grant


def revoke_grant(
    session: Session, actor: str, grant_id: str, reason: str = "", now: datetime | None = None
) -> Grant:
    now = now or now_utc()
    grant = get_grant(session, grant_id)
    revoker, who = _actor(session, actor, grant.project)
    check(Action.REVOKE_GRANT, who)
    if grant.status not in ("requested", "approved"):
        raise RegistryError(f"grant {grant_id} is already {grant.status}")
    previous = grant.status
    grant.status = "revoked"
    grant.revoked_by_id = revoker.id
    grant.revoked_at = now
    audit.record(
        session,
        actor,
        "grant.revoke",
        "grant",
        grant.id,
        {"project": grant.project.slug, "dataset": grant.dataset.ref, "from": previous, "reason": reason},
    )
    return grant


def authorise(session: Session, actor: str, action: Action, slug: str | None = None) -> User:
    """Check a rule that has no registry change of its own (provisioning, audit reading)."""
    project = get_project(session, slug) if slug else None
    user, who = _actor(session, actor, project)
    check(action, who)
    return user
