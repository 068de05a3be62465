"""Grants: a project's access to one dataset version, requested by its lead, decided by a custodian."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.registry.errors import RegistryError
from hub.registry.lookup import acting, get_dataset, get_grant, get_project, project_state, require_aware
from hub.registry.models import Dataset, Grant, Permit, Project, User
from hub.registry.permissions import RegistryAction, require
from hub.registry.vocabulary import DatasetKind, GrantStatus, PermitStatus, ProjectStatus

MAX_DATE_SHIFT_DAYS = 3650


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


def build_grant(
    project: Project,
    dataset: Dataset,
    columns: Mapping[str, list[str]],
    requested_by: User,
    *,
    expires_at: datetime | None = None,
    remove_opted_out: bool = True,
    pseudonymise: Iterable[str] = (),
    age_bands: bool = False,
    date_shift_days: int | None = None,
    note: str = "",
    now: datetime,
) -> Grant:
    """A checked, unsaved grant of a dataset version's columns to a project (status: requested).

    Identifier columns are always pseudonymised; `pseudonymise` adds "table.column" (or "column" for
    every table) to that. Both the command line's requests and a data permit's grants are built here.
    """
    if dataset.kind != DatasetKind.COHORT:
        raise RegistryError(f"{dataset.ref} is an opt-out list, not research data; it cannot be granted")
    approved = _check_columns(dataset, columns)
    expires_at = require_aware(expires_at) if expires_at else project.expires_at
    if expires_at <= now:
        raise RegistryError(f"expiry date {expires_at:%Y-%m-%d} is in the past; give a future --expires date")
    if expires_at > project.expires_at:
        raise RegistryError(
            f"a grant cannot outlast its project ({project.slug} expires {project.expires_at:%Y-%m-%d}); "
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
    return Grant(
        project_id=project.id,
        dataset_id=dataset.id,
        dataset=dataset,
        columns=approved,
        remove_opted_out=remove_opted_out,
        pseudonymise=pseudo,
        age_bands=age_bands,
        date_shift_days=date_shift_days,
        expires_at=expires_at,
        status=GrantStatus.REQUESTED,
        requested_by_id=requested_by.id,
        requested_at=now,
        note=note,
    )


def grant_facts(grant: Grant) -> dict[str, object]:
    """What the audit trail keeps of a grant's terms."""
    return {
        "project": grant.project.slug,
        "dataset": grant.dataset.ref,
        "columns": grant.columns,
        "pseudonymise": grant.pseudonymise,
        "remove_opted_out": grant.remove_opted_out,
        "age_bands": grant.age_bands,
        "date_shift_days": grant.date_shift_days,
        "expires_at": grant.expires_at.isoformat(),
    }


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
    """Ask for a dataset version's columns for a project (see build_grant)."""
    now = now or utcnow()
    project = get_project(session, slug)
    requester, who = acting(session, actor, project)
    require(RegistryAction.REQUEST_GRANT, who, project=project_state(project), now=now)
    grant = build_grant(
        project,
        get_dataset(session, dataset_ref),
        columns,
        requester,
        expires_at=expires_at,
        remove_opted_out=remove_opted_out,
        pseudonymise=pseudonymise,
        age_bands=age_bands,
        date_shift_days=date_shift_days,
        note=note,
        now=now,
    )
    session.add(grant)
    session.flush()
    audit.record(session, actor, AuditAction.GRANT_REQUEST, "grant", grant.id, grant_facts(grant))
    return grant


def decide_grant(
    session: Session, actor: str, grant_id: str, approve: bool, note: str = "", now: datetime | None = None
) -> Grant:
    now = now or utcnow()
    grant = get_grant(session, grant_id)
    project = grant.project
    decider, who = acting(session, actor, project)
    require(
        RegistryAction.APPROVE_GRANT if approve else RegistryAction.REJECT_GRANT,
        who,
        project=project_state(project),
        requested_by=grant.requested_by.username,
        now=now,
    )
    if grant.status != GrantStatus.REQUESTED:
        raise RegistryError(f"grant {grant_id} is {grant.status}; only a requested grant can be decided")
    if approve and grant.expires_at <= now:
        raise RegistryError(
            f"grant {grant_id} expired on {grant.expires_at:%Y-%m-%d}; the lead must request again"
        )
    grant.status = GrantStatus.APPROVED if approve else GrantStatus.REJECTED
    grant.approved_by_id = decider.id
    grant.approved_at = now
    if note:
        grant.note = (grant.note + "\n" if grant.note else "") + note
    audit.record(
        session,
        actor,
        AuditAction.GRANT_APPROVE if approve else AuditAction.GRANT_REJECT,
        "grant",
        grant.id,
        {"project": project.slug, "dataset": grant.dataset.ref, "note": note},
    )
    return grant


def revoke_grant(
    session: Session, actor: str, grant_id: str, reason: str = "", now: datetime | None = None
) -> Grant:
    now = now or utcnow()
    grant = get_grant(session, grant_id)
    revoker, who = acting(session, actor, grant.project)
    require(RegistryAction.REVOKE_GRANT, who)
    if grant.status not in (GrantStatus.REQUESTED, GrantStatus.APPROVED):
        raise RegistryError(f"grant {grant_id} is already {grant.status}")
    previous = grant.status
    grant.status = GrantStatus.REVOKED
    grant.revoked_by_id = revoker.id
    grant.revoked_at = now
    audit.record(
        session,
        actor,
        AuditAction.GRANT_REVOKE,
        "grant",
        grant.id,
        {"project": grant.project.slug, "dataset": grant.dataset.ref, "from": previous, "reason": reason},
    )
    session.flush()
    revoke_lapsed_permits(session, actor, grant.project, f"its grant {grant.id} was revoked")
    return grant


def revoke_lapsed_permits(session: Session, actor: str, project: Project, reason: str) -> None:
    """Mark revoked each issued permit of `project` that no longer holds: the project is closed, or
    none of the permit's grants is still approved. A permit's status says whether it is in force."""
    closed = project.status == ProjectStatus.CLOSED
    for permit in session.execute(
        select(Permit).where(Permit.project_id == project.id, Permit.status == PermitStatus.ISSUED)
    ).scalars():
        in_force = session.execute(
            select(Grant.id)
            .where(Grant.permit_id == permit.id, Grant.status == GrantStatus.APPROVED)
            .limit(1)
        ).first()
        if closed or in_force is None:
            permit.status = PermitStatus.REVOKED
            audit.record(session, actor, AuditAction.PERMIT_REVOKE, "permit", permit.id, {"reason": reason})
