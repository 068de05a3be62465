"""Registry glue: turn a project's approved, unexpired grants into a ReleaseSpec and publish it.

A closed, suspended or expired project, or one without valid grants, gets an empty release. When
the new release discloses less than the current one (a revoked or expired grant, fewer columns, a
new opt-out list, ...), every older release is deleted and the deletion is audited in the same
transaction as the provisioning event.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.secrets import read_or_create_secret
from hub.kernel.settings import Settings
from hub.provisioning.builder import exposure, project_lock, publish_release, read_manifest
from hub.provisioning.spec import (
    DatasetSpec,
    ProvisioningError,
    ReleaseResult,
    ReleaseSpec,
    SourceTable,
    StepCallback,
)
from hub.registry.access import active_grants
from hub.registry.lookup import authorise, get_project
from hub.registry.models import Dataset, Grant, Project
from hub.registry.permissions import NotAllowed, RegistryAction, project_is_open
from hub.registry.vocabulary import DatasetKind, ProjectStatus

AGE_BAND_YEARS = 5
MASTER_KEY_FILE = "pseudonym.key"


def _source(table: dict[str, Any], approved: list[str], pseudonymise: list[str], unique: bool) -> SourceTable:
    return SourceTable(
        name=table["name"],
        path=Path(table["source"]),
        format=table["format"],
        columns=tuple(approved),
        identifier_column=table.get("identifier_column"),
        pseudonymise=tuple(pseudonymise),
        unique_identifier=unique,
        expected_schema={c["name"]: c["type"] for c in table["columns"]},
        content_hash=table.get("content_hash"),
    )


def grant_spec(grant: Grant) -> DatasetSpec:
    dataset: Dataset = grant.dataset
    tables = []
    for name, approved in grant.columns.items():
        table = dataset.table(name)
        if table is None:
            raise ProvisioningError(f"grant {grant.id}: {dataset.ref} has no table {name}; revoke the grant")
        tables.append(
            _source(table, approved, grant.pseudonymise.get(name, []), name == dataset.person_table)
        )
    return DatasetSpec(
        name=dataset.name,
        version=dataset.version,
        tables=tuple(tables),
        remove_opted_out=grant.remove_opted_out,
        age_band_years=AGE_BAND_YEARS if grant.age_bands else None,
        birth_date_column=dataset.profile.get("birth_date_column"),
        date_shift_days=grant.date_shift_days,
        grant={
            "id": grant.id,
            "dataset": dataset.ref,
            "columns": grant.columns,
            "pseudonymise": grant.pseudonymise,
            "remove_opted_out": grant.remove_opted_out,
            "age_bands": grant.age_bands,
            "date_shift_days": grant.date_shift_days,
            "expires_at": grant.expires_at.isoformat(),
            "approved_by": grant.approved_by.username if grant.approved_by else None,
            "approved_at": grant.approved_at.isoformat() if grant.approved_at else None,
        },
    )


def optout_sources(session: Session) -> tuple[SourceTable, ...]:
    """Every table of the latest version of every registered opt-out list."""
    latest = (
        select(Dataset.name, func.max(Dataset.version).label("version"))
        .where(Dataset.kind == DatasetKind.OPTOUT)
        .group_by(Dataset.name)
        .subquery()
    )
    rows = session.execute(
        select(Dataset).join(latest, (Dataset.name == latest.c.name) & (Dataset.version == latest.c.version))
    ).scalars()
    return tuple(
        _source(table, [], [], False)
        for dataset in sorted(rows, key=lambda d: d.name)
        for table in dataset.tables
        if table.get("identifier_column")
    )


@dataclasses.dataclass(frozen=True)
class ReleasePlan:
    """What a provisioning run will build, decided from the registry in one read-only look."""

    spec: ReleaseSpec
    grant_ids: tuple[str, ...]
    is_open: bool
    withdrawn: tuple[str, ...]


def _authorise_build(session: Session, actor: str, slug: str) -> None:
    """Provisioning is for administrators and custodians; but the build of a closed project only
    deletes its data, so whoever may close the project (its lead too) may also run that one."""
    try:
        authorise(session, actor, RegistryAction.PROVISION, slug)
    except NotAllowed as refused:
        if get_project(session, slug).status != ProjectStatus.CLOSED:
            raise
        try:
            authorise(session, actor, RegistryAction.CLOSE_PROJECT, slug)
        except NotAllowed:
            raise refused from None


def plan_release(session: Session, slug: str, settings: Settings, actor: str, now: datetime) -> ReleasePlan:
    _authorise_build(session, actor, slug)
    project: Project = get_project(session, slug)
    is_open = project_is_open(project.status, project.expires_at, now)
    grants = sorted(active_grants(session, project, now), key=lambda g: g.dataset.name) if is_open else []
    datasets = tuple(grant_spec(g) for g in grants)
    optouts = optout_sources(session)
    if not optouts and any(ds.remove_opted_out for ds in datasets):
        raise ProvisioningError(
            "no opt-out list is registered, so opted-out patients cannot be removed; register one with "
            "`tre dataset add NAME --kind optout ...`"
        )
    draft = ReleaseSpec(
        project=slug,
        datasets=datasets,
        master_key=read_or_create_secret(settings.keys_dir / MASTER_KEY_FILE),
        optouts=optouts,
        keep=settings.releases_to_keep,
    )
    previous = read_manifest(settings.project_dir(slug))
    withdrawn = tuple(sorted(set(previous.get("exposure", [])) - set(exposure(draft)))) if previous else ()
    return ReleasePlan(
        spec=dataclasses.replace(draft, purge=not is_open or bool(withdrawn)),
        grant_ids=tuple(g.id for g in grants),
        is_open=is_open,
        withdrawn=withdrawn,
    )


def record_release(session: Session, plan: ReleasePlan, result: ReleaseResult, actor: str) -> None:
    spec = plan.spec
    audit.record(
        session,
        actor,
        AuditAction.PROJECT_PROVISION,
        "project",
        spec.project,
        {
            "release": result.release,
            "grants": list(plan.grant_ids),
            "datasets": [f"{ds.name}:{ds.version}" for ds in spec.datasets],
            "rows": result.rows_out,
            "project_open": plan.is_open,
        },
    )
    if result.deleted_releases:
        if not plan.is_open:
            reason = "project not open"
        elif plan.withdrawn:
            reason = "data withdrawn"
        else:
            reason = f"keeping the newest {spec.keep}"
        audit.record(
            session,
            actor,
            AuditAction.RELEASE_DELETE,
            "project",
            spec.project,
            {"releases": list(result.deleted_releases), "reason": reason, "withdrawn": list(plan.withdrawn)},
        )


def provision_project(
    settings: Settings,
    slug: str,
    actor: str,
    progress: StepCallback | None = None,
    now: datetime | None = None,
) -> ReleaseResult:
    """Build and publish `slug`'s release from its grants, and audit it.

    Three steps, so a build of minutes never holds the registry's write lock (on SQLite that would
    stall every spawn check and review meanwhile): plan in a read-only session, build with no
    transaction open, then record the audit events in a short one. The project lock spans all three,
    so a concurrent revoke's rebuild cannot be overtaken by a build planned before it.
    """
    now = now or datetime.now(UTC)
    with session_scope(settings, readonly=True) as s:
        _authorise_build(s, actor, slug)  # before the lock creates any folder
    with project_lock(settings.project_dir(slug)):
        with session_scope(settings, readonly=True) as s:
            plan = plan_release(s, slug, settings, actor, now)
        result = publish_release(settings.project_dir(slug), plan.spec, progress)
        with session_scope(settings) as s:
            record_release(s, plan, result, actor)
    return result
