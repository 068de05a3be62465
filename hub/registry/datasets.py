"""Registering datasets: versions of source files, their schema, labels and catalogue facts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.hashing import file_sha256
from hub.registry import intake
from hub.registry.errors import RegistryError
from hub.registry.lookup import acting, require_slug
from hub.registry.models import Dataset
from hub.registry.permissions import RegistryAction, require
from hub.registry.vocabulary import DatasetKind, HealthCategory, Sensitivity


@dataclass(frozen=True)
class SourceFile:
    """A source file offered for registration as one table of a dataset."""

    name: str
    path: Path


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
    tables: list[SourceFile],
    identifier_column: str,
    *,
    kind: str = DatasetKind.COHORT,
    title: str | None = None,
    description: str | None = None,
    person_table: str | None = None,
    sensitivity: Mapping[str, str] | None = None,
    coding: Mapping[str, str] | None = None,
    health_categories: Sequence[str] | None = None,
) -> tuple[Dataset, bool]:
    """Register sources as dataset `name`: a new version when anything changed, else the existing one.

    Returns (dataset, created). `sensitivity` and `coding` override the name-based defaults, keyed by
    "column" or "table.column". `health_categories` are its EHDS Art. 51 categories (HealthCategory
    codes; default: the previous version's, else electronic health records).
    """
    custodian, who = acting(session, actor)
    require(RegistryAction.REGISTER_DATASET, who)
    require_slug("dataset", name)
    try:
        kind = DatasetKind(kind)
    except ValueError:
        raise RegistryError(f"unknown dataset kind {kind!r}: use cohort or optout") from None
    if not tables:
        raise RegistryError("give at least one --table NAME=PATH")
    table_names = [t.name for t in tables]
    if len(set(table_names)) != len(table_names):
        raise RegistryError("each --table name may be given only once")
    person = person_table or tables[0].name
    if person not in table_names:
        raise RegistryError(f"person table {person!r} is not one of the tables: {', '.join(table_names)}")
    categories = _health_categories(health_categories)
    sens = _parse_overrides(sensitivity or {}, [v.value for v in Sensitivity], "sensitivity")
    codes = _parse_overrides(coding or {}, None, "coding system")

    specs, unique_individuals, profile = intake.scan_sources(
        [(t.name, t.path) for t in tables], identifier_column, person, sens, codes
    )

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
        categories = categories or latest.health_categories
        unchanged = (
            latest.health_categories == categories
            and latest.content_hash == content_hash
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
        health_categories=categories or [HealthCategory.EHRS.value],
        content_hash=content_hash,
    )
    session.add(dataset)
    session.flush()
    audit.record(
        session,
        actor,
        AuditAction.DATASET_REGISTER,
        "dataset",
        dataset.ref,
        {
            "kind": kind.value,
            "health_categories": dataset.health_categories,
            "content_hash": content_hash,
            "tables": {s["name"]: {"source": s["source"], "rows": s["row_count"]} for s in specs},
            "previous_version": latest.version if latest else None,
        },
    )
    return dataset, True


def _health_categories(codes: Sequence[str] | None) -> list[str]:
    """The codes, checked, once each and in the vocabulary's order; [] when none were given."""
    given = set(codes or ())
    unknown = sorted(given - {c.value for c in HealthCategory})
    if unknown:
        raise RegistryError(
            f"unknown health category {', '.join(unknown)}: use the EHDS Art. 51 codes "
            f"{', '.join(HealthCategory)} (`tre dataset categories` lists them)"
        )
    return [c.value for c in HealthCategory if c.value in given]


def verify_dataset_sources(dataset: Dataset) -> None:
    """Raise RegistryError if any registered source file is gone or no longer what was registered."""
    for table in dataset.tables:
        path = Path(table["source"])
        if not path.is_file():
            raise RegistryError(
                f"source {path} of {dataset.ref} table {table['name']!r} is missing; restore it or "
                "re-register the dataset"
            )
        if "sha256:" + file_sha256(path) != table["content_hash"]:
            raise RegistryError(
                f"source {path} of {dataset.ref} table {table['name']!r} changed since registration "
                f"(schema or content); re-register it with `tre dataset add {dataset.name} ...`"
            )
