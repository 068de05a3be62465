"""Data access applications and data permits: a lead applies, a custodian decides, a permit is issued.

The flow (EHDS Regulation 2025/327, Art. 67 applications and Art. 68 permits):

    draft --submit--> submitted --ask--> questions --answer--> submitted
                      submitted --return--> returned --(edit) submit--> submitted
                      submitted --reject--> rejected;  --approve--> approved (a permit is issued)
    draft | returned | questions --withdraw--> withdrawn

Approval is one transaction: the project is created (or, for a later version, extended), the named
researchers join it, each approved dataset becomes a grant carrying the permit's id, the grants of
the version before are superseded, and the permit is signed. Each change writes its audit event.
Every operation takes the revision the person's page was drawn from: a page made stale by someone
else's change is refused, not applied over it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.kernel.signing import Signer
from hub.registry.errors import RegistryError
from hub.registry.grants import build_grant, grant_facts
from hub.registry.lookup import acting, find_user, get_dataset, get_project, require_slug
from hub.registry.models import (
    Application,
    ApplicationAttachment,
    ApplicationMessage,
    Dataset,
    Grant,
    Membership,
    Permit,
    Project,
    User,
    is_opaque_id,
)
from hub.registry.permissions import NotAllowed, RegistryAction, RegistryActor, may_read_permits, require
from hub.registry.vocabulary import (
    EDITABLE_APPLICATIONS,
    FINAL_APPLICATIONS,
    ApplicationStatus,
    DataForm,
    DatasetKind,
    GrantStatus,
    PermitStatus,
    Purpose,
    Role,
    Sensitivity,
)

MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
MAX_TEXT = 20_000
# Columns whose request must say why: they identify people, directly or in combination.
NEEDS_JUSTIFICATION = {Sensitivity.IDENTIFIER, Sensitivity.QUASI_IDENTIFIER, Sensitivity.SENSITIVE}
TEXT_FIELDS = ("title", "description", "benefit", "data_form_reason", "linkage", "safeguards", "ethics_ref")


class StaleForm(RegistryError):
    """The page was drawn before someone else changed the application."""


class NoSuchApplication(NotAllowed):
    """Not an application this person may see: the same answer whether it exists or not."""


class NoSuchPermit(NotAllowed):
    """Not a permit (or a project's permits) this person may see: the same answer as for nothing."""


@dataclass(frozen=True)
class DatasetDecision:
    """A custodian's terms for one requested dataset; `approve=False` leaves it out of the permit."""

    dataset: str
    approve: bool = True
    columns: Mapping[str, list[str]] = field(default_factory=dict)
    remove_opted_out: bool = True
    pseudonymise: Sequence[str] = ()
    age_bands: bool = False
    date_shift_days: int | None = None
    expires_at: datetime | None = None
    conditions: str = ""


# -- who may see and do what ---------------------------------------------------------------------


def _named(application: Application) -> frozenset[str]:
    return frozenset(application.researchers or ())


def may_read(user: User, application: Application) -> bool:
    """Its lead always; custodians and administrators once it has left the lead's drafts."""
    if user.disabled:
        return False
    if application.lead_id == user.id:
        return True
    return (user.is_custodian or user.is_admin) and application.status != ApplicationStatus.DRAFT


def get_application(session: Session, viewer: str, application_id: str) -> tuple[Application, User]:
    user = find_user(session, viewer)
    application = session.get(Application, application_id) if is_opaque_id(application_id, "a") else None
    if user is None or application is None or not may_read(user, application):
        raise NoSuchApplication(f"There is no application {application_id!r} that you can see.")
    return application, user


def _checked_revision(application: Application, revision: int) -> None:
    if revision != application.revision:
        raise StaleForm(
            f"application {application.id} changed since this page was drawn (it is now "
            f"{application.status}); reload the page and try again"
        )


def _as_lead(session: Session, actor: str, application_id: str, revision: int) -> tuple[Application, User]:
    application, user = get_application(session, actor, application_id)
    if application.lead_id != user.id:
        raise NotAllowed(f"only {application.lead.username}, who leads this application, may change it")
    _checked_revision(application, revision)
    return application, user


def _roles_by_project(session: Session, user: User) -> dict[int, frozenset[Role]]:
    rows = session.execute(
        select(Membership.project_id, Membership.role).where(Membership.user_id == user.id)
    ).all()
    roles: dict[int, set[Role]] = {}
    for project_id, role in rows:
        roles.setdefault(project_id, set()).add(Role(role))
    return {k: frozenset(v) for k, v in roles.items()}


def _require_decider(user: User, application: Application, roles: dict[int, frozenset[Role]]) -> None:
    """The rule (hub.registry.permissions) on what is known of the user: no query of its own."""
    project_roles = roles.get(application.project_id, frozenset()) if application.project_id else frozenset()
    who = RegistryActor(user.username, user.is_admin, user.is_custodian, user.disabled, project_roles)
    require(
        RegistryAction.DECIDE_APPLICATION,
        who,
        requested_by=application.lead.username,
        named=_named(application),
    )


def _as_decider(session: Session, actor: str, application_id: str, revision: int) -> tuple[Application, User]:
    application, user = get_application(session, actor, application_id)
    _require_decider(user, application, _roles_by_project(session, user))
    _checked_revision(application, revision)
    return application, user


def may_decide(session: Session, user: User, application: Application) -> str | None:
    """Why `user` may not decide `application` (both already read) now, or None when they may."""
    try:
        _require_decider(user, application, _roles_by_project(session, user))
    except NotAllowed as exc:
        return str(exc)
    if application.status != ApplicationStatus.SUBMITTED:
        return f"it is {application.status}, not waiting for a decision"
    return None


def _changed(
    session: Session,
    application: Application,
    actor: str,
    action: AuditAction,
    status: ApplicationStatus | None = None,
    **details: object,
) -> None:
    previous = application.status
    if status is not None:
        application.status = status
    application.revision += 1
    audit.record(
        session,
        actor,
        action,
        "application",
        application.id,
        {"project": application.project_slug, "version": application.version, "from": previous, **details},
    )


def _say(session: Session, application: Application, author: User, kind: str, text: str) -> None:
    text = text.strip()
    if not text:
        raise RegistryError(f"write the {kind} first: it cannot be empty")
    if len(text) > MAX_TEXT:
        raise RegistryError(f"the {kind} is too long ({len(text)} characters); keep it under {MAX_TEXT}")
    session.add(ApplicationMessage(application_id=application.id, author_id=author.id, kind=kind, text=text))


# -- the lead ------------------------------------------------------------------------------------


def _slug_taken(session: Session, slug: str, lead_id: int) -> bool:
    if session.execute(select(Project.id).where(Project.slug == slug)).first():
        return True
    # Another lead's open first application already proposes it.
    return bool(
        session.execute(
            select(Application.id).where(
                Application.project_slug == slug,
                Application.project_id.is_(None),
                Application.lead_id != lead_id,
                Application.status.not_in([s.value for s in FINAL_APPLICATIONS]),
            )
        ).first()
    )


def start_application(session: Session, actor: str, slug: str, title: str) -> Application:
    """A new project's first application, as a draft the lead fills in."""
    lead, who = acting(session, actor)
    if who.disabled:
        raise NotAllowed(f"user {actor} is disabled; ask an administrator to re-enable the account")
    require_slug("project", slug)
    if _slug_taken(session, slug, lead.id):
        raise RegistryError(f"the project name {slug!r} is already taken; choose another")
    application = Application(lead_id=lead.id, project_slug=slug, title=title.strip()[:300], researchers=[])
    session.add(application)
    session.flush()
    audit.record(
        session, actor, AuditAction.APPLICATION_CREATE, "application", application.id, {"project": slug}
    )
    return application


def start_new_version(session: Session, actor: str, slug: str) -> Application:
    """More data or more time for an approved project: a copy of its latest approved application."""
    lead, _ = acting(session, actor)
    project = session.execute(select(Project).where(Project.slug == slug)).scalar_one_or_none()
    if project is None or project.lead_id != lead.id:
        raise NotAllowed(f"There is no project {slug!r} that you lead.")
    latest = (
        session.execute(
            select(Application)
            .where(Application.project_id == project.id)
            .order_by(Application.version.desc())
        )
        .scalars()
        .first()
    )
    if latest is None:
        raise RegistryError(f"project {slug} was set up on the command line; ask an administrator")
    if latest.status != ApplicationStatus.APPROVED:
        raise RegistryError(f"version {latest.version} of {slug}'s application is still {latest.status}")
    copied = {f: getattr(latest, f) for f in (*TEXT_FIELDS, "purpose", "data_form", "ends_at")}
    application = Application(
        lead_id=lead.id,
        project_slug=slug,
        project_id=project.id,
        version=latest.version + 1,
        previous_id=latest.id,
        researchers=list(latest.researchers),
        datasets=[dict(d) for d in latest.datasets],
        **copied,
    )
    session.add(application)
    session.flush()
    audit.record(
        session,
        actor,
        AuditAction.APPLICATION_CREATE,
        "application",
        application.id,
        {"project": slug, "version": application.version, "previous": latest.id},
    )
    return application


def _check_requests(session: Session, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Requested datasets, columns and justifications, each checked against the catalogue."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for request in requests:
        name = str(request.get("dataset", ""))
        dataset = session.execute(
            select(Dataset).where(Dataset.name == name).order_by(Dataset.version.desc()).limit(1)
        ).scalar_one_or_none()
        if dataset is None or dataset.kind != DatasetKind.COHORT:
            raise RegistryError(f"there is no dataset {name!r} in the catalogue")
        if name in seen:
            raise RegistryError(f"dataset {name} is asked for twice; ask for it once")
        seen.add(name)
        columns: dict[str, list[str]] = {}
        for table, cols in dict(request.get("columns", {})).items():
            known = dataset.column_names(table)
            if not known:
                raise RegistryError(f"dataset {name} has no table {table!r}")
            unknown = sorted(set(cols) - set(known))
            if unknown:
                raise RegistryError(f"dataset {name} table {table} has no column(s) {', '.join(unknown)}")
            if cols:
                columns[table] = [c for c in known if c in cols]  # catalogue order, each once
        if not columns:
            raise RegistryError(f"choose at least one column of dataset {name}")
        justifications = {
            key: str(text).strip()[:MAX_TEXT]
            for key, text in dict(request.get("justifications", {})).items()
            if str(text).strip()
        }
        out.append({"dataset": name, "columns": columns, "justifications": justifications})
    return out


def update_application(
    session: Session, actor: str, application_id: str, revision: int, fields: Mapping[str, Any]
) -> Application:
    """Save the lead's form: every field is checked, and a refusal saves nothing."""
    application, _ = _as_lead(session, actor, application_id, revision)
    if application.status not in EDITABLE_APPLICATIONS:
        raise RegistryError(f"application {application.id} is {application.status} and cannot be edited now")
    changes: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if name in fields:
            value = str(fields[name]).strip()
            if len(value) > (300 if name == "title" else MAX_TEXT):
                raise RegistryError(f"{name.replace('_', ' ')} is too long")
            changes[name] = value
    if "purpose" in fields:
        try:
            changes["purpose"] = Purpose(fields["purpose"]).value
        except ValueError:
            raise RegistryError("choose one of the purposes of EHDS Article 53") from None
    if "data_form" in fields:
        try:
            changes["data_form"] = DataForm(fields["data_form"]).value
        except ValueError:
            raise RegistryError("choose anonymised or pseudonymised data") from None
    if "ends_at" in fields and fields["ends_at"] is not None:
        ends_at = fields["ends_at"]
        if ends_at.tzinfo is None or ends_at <= utcnow():
            raise RegistryError(f"the period must end in the future, not on {ends_at:%Y-%m-%d}")
        changes["ends_at"] = ends_at
    if "researchers" in fields:
        names = sorted({str(n).strip().lower() for n in fields["researchers"] if str(n).strip()})
        for name in names:
            user = find_user(session, name)
            if user is None or user.disabled:
                raise RegistryError(f"there is no active user {name!r} to name as a researcher")
            if user.id == application.lead_id:
                raise RegistryError("you lead the project: do not name yourself as a researcher")
        changes["researchers"] = names
    if "datasets" in fields:
        changes["datasets"] = _check_requests(session, fields["datasets"])
    for name, value in changes.items():
        setattr(application, name, value)
    _changed(session, application, actor, AuditAction.APPLICATION_UPDATE, fields=sorted(changes))
    return application


def attach_protocol(
    session: Session, actor: str, application_id: str, revision: int, filename: str, content: bytes
) -> Application:
    """The study protocol, a PDF of at most MAX_ATTACHMENT_BYTES (checked by content, not by name)."""
    application, _ = _as_lead(session, actor, application_id, revision)
    if application.status not in EDITABLE_APPLICATIONS:
        raise RegistryError(f"application {application.id} is {application.status}; attachments are fixed")
    if len(content) > MAX_ATTACHMENT_BYTES:
        raise RegistryError(
            f"the protocol is {len(content) // 1024} KiB; the limit is {MAX_ATTACHMENT_BYTES // 1024} KiB"
        )
    if not content.startswith(b"%PDF-"):
        raise RegistryError("the protocol must be a PDF file (it does not start like one)")
    name = "".join(c for c in filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1] if c.isprintable())[:200]
    existing = session.get(ApplicationAttachment, application.id)
    if existing is None:
        session.add(ApplicationAttachment(application_id=application.id, content=content))
    else:
        existing.content = content
    application.attachment_name = name or "protocol.pdf"
    application.attachment_sha256 = hashlib.sha256(content).hexdigest()
    _changed(
        session,
        application,
        actor,
        AuditAction.APPLICATION_ATTACH,
        name=application.attachment_name,
        sha256=application.attachment_sha256,
        bytes=len(content),
    )
    return application


def missing_parts(session: Session, application: Application) -> list[str]:
    """What a complete application still lacks (empty: it can be submitted)."""
    missing = [
        label
        for name, label in (
            ("title", "a title"),
            ("description", "a description"),
            ("benefit", "the expected benefit"),
            ("data_form_reason", "why the data should be anonymised or pseudonymised"),
            ("safeguards", "the safeguards"),
        )
        if not getattr(application, name)
    ]
    if application.ends_at is None:
        missing.append("the end of the period")
    elif application.ends_at <= utcnow():
        missing.append("a period that ends in the future")
    if not application.datasets:
        missing.append("at least one dataset")
    for request in application.datasets:
        dataset = get_dataset(session, request["dataset"])
        for table, cols in request["columns"].items():
            labels = {c["name"]: c.get("sensitivity") for c in dataset.table(table)["columns"]}
            for col in cols:
                if labels.get(col) in NEEDS_JUSTIFICATION and not request["justifications"].get(
                    f"{table}.{col}"
                ):
                    missing.append(f"a justification for {request['dataset']} {table}.{col} ({labels[col]})")
    if application.project_id is None and _slug_taken(session, application.project_slug, application.lead_id):
        missing.append(f"a project name other than {application.project_slug!r}, which is taken")
    return missing


def submit_application(session: Session, actor: str, application_id: str, revision: int) -> Application:
    application, _ = _as_lead(session, actor, application_id, revision)
    if application.status not in EDITABLE_APPLICATIONS:
        raise RegistryError(f"application {application.id} is {application.status} and cannot be submitted")
    missing = missing_parts(session, application)
    if missing:
        raise RegistryError("before submitting, add " + "; ".join(missing))
    application.submitted_at = utcnow()
    _changed(session, application, actor, AuditAction.APPLICATION_SUBMIT, ApplicationStatus.SUBMITTED)
    return application


def answer_questions(
    session: Session, actor: str, application_id: str, revision: int, text: str
) -> Application:
    application, lead = _as_lead(session, actor, application_id, revision)
    if application.status != ApplicationStatus.QUESTIONS:
        raise RegistryError(
            f"application {application.id} has no open questions (it is {application.status})"
        )
    _say(session, application, lead, "answer", text)
    _changed(session, application, actor, AuditAction.APPLICATION_ANSWER, ApplicationStatus.SUBMITTED)
    return application


def withdraw_application(session: Session, actor: str, application_id: str, revision: int) -> Application:
    application, _ = _as_lead(session, actor, application_id, revision)
    if application.status in FINAL_APPLICATIONS:
        raise RegistryError(f"application {application.id} is already {application.status}")
    _changed(session, application, actor, AuditAction.APPLICATION_WITHDRAW, ApplicationStatus.WITHDRAWN)
    return application


# -- the custodian -------------------------------------------------------------------------------


def queue(
    session: Session, viewer: User, *, offset: int = 0, limit: int | None = None
) -> list[tuple[Application, str | None]]:
    """Applications waiting for a custodian, oldest first (`limit` of them from `offset`), each with
    why `viewer` may not decide it (None: she may). A handful of queries however long the queue."""
    waiting = session.execute(
        select(Application)
        .where(Application.status == ApplicationStatus.SUBMITTED)
        .options(joinedload(Application.lead))
        .order_by(Application.submitted_at, Application.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    roles = _roles_by_project(session, viewer)
    out = []
    for application in waiting:
        try:
            _require_decider(viewer, application, roles)
            out.append((application, None))
        except NotAllowed as exc:
            out.append((application, str(exc)))
    return out


def queue_length(session: Session) -> int:
    """How many applications wait for a custodian."""
    return session.scalar(
        select(func.count()).select_from(Application).where(Application.status == ApplicationStatus.SUBMITTED)
    )


def _waiting(application: Application) -> None:
    if application.status != ApplicationStatus.SUBMITTED:
        raise RegistryError(
            f"application {application.id} is {application.status}, not waiting for a decision"
        )


def _custodian_says(
    session: Session,
    actor: str,
    application_id: str,
    revision: int,
    kind: str,
    text: str,
    action: AuditAction,
    status: ApplicationStatus,
) -> Application:
    """A custodian's answer to a waiting application that is not an approval, with its reason."""
    application, custodian = _as_decider(session, actor, application_id, revision)
    _waiting(application)
    _say(session, application, custodian, kind, text)
    if status is ApplicationStatus.REJECTED:
        application.decided_at, application.decided_by_id = utcnow(), custodian.id
    _changed(session, application, actor, action, status)
    return application


def ask_questions(session: Session, actor: str, application_id: str, revision: int, text: str) -> Application:
    return _custodian_says(
        session, actor, application_id, revision, "question", text,
        AuditAction.APPLICATION_QUESTION, ApplicationStatus.QUESTIONS,
    )  # fmt: skip


def return_application(
    session: Session, actor: str, application_id: str, revision: int, reason: str
) -> Application:
    return _custodian_says(
        session, actor, application_id, revision, "return", reason,
        AuditAction.APPLICATION_RETURN, ApplicationStatus.RETURNED,
    )  # fmt: skip


def reject_application(
    session: Session, actor: str, application_id: str, revision: int, reason: str
) -> Application:
    return _custodian_says(
        session, actor, application_id, revision, "reject", reason,
        AuditAction.APPLICATION_REJECT, ApplicationStatus.REJECTED,
    )  # fmt: skip


def _project_for(session: Session, application: Application, custodian: User, actor: str) -> Project:
    """The approved project: created for a first version, extended to the new period for a later one."""
    assert application.ends_at is not None  # submitted applications have a period
    if application.project_id is None:
        if session.execute(select(Project.id).where(Project.slug == application.project_slug)).first():
            raise RegistryError(f"project name {application.project_slug!r} was taken meanwhile; return it")
        project = Project(
            slug=application.project_slug,
            title=application.title,
            purpose=application.description,
            lead_id=application.lead_id,
            expires_at=application.ends_at,
        )
        session.add(project)
        session.flush()
        session.add(
            Membership(
                user_id=application.lead_id, project_id=project.id, role=Role.LEAD, added_by_id=custodian.id
            )
        )
        application.project_id = project.id
        audit.record(
            session,
            actor,
            AuditAction.PROJECT_CREATE,
            "project",
            project.slug,
            {
                "title": project.title,
                "lead": application.lead.username,
                "expires_at": project.expires_at.isoformat(),
                "application": application.id,
            },
        )
        return project
    project = session.get(Project, application.project_id)
    assert project is not None
    if application.ends_at != project.expires_at:
        audit.record(
            session,
            actor,
            AuditAction.PROJECT_EXTEND,
            "project",
            project.slug,
            {
                "from": project.expires_at.isoformat(),
                "to": application.ends_at.isoformat(),
                "application": application.id,
            },
        )
        project.expires_at = application.ends_at
    return project


def _add_named(
    session: Session, application: Application, project: Project, custodian: User, actor: str
) -> None:
    members = set(
        session.execute(
            select(User.username)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.project_id == project.id, Membership.role == Role.RESEARCHER)
        ).scalars()
    )
    for name in application.researchers:
        user = find_user(session, name)
        if user is None or user.disabled:
            raise RegistryError(
                f"named researcher {name} is no longer an active user; return the application"
            )
        if name not in members:
            session.add(
                Membership(
                    user_id=user.id, project_id=project.id, role=Role.RESEARCHER, added_by_id=custodian.id
                )
            )
            audit.record(
                session,
                actor,
                AuditAction.MEMBER_ADD,
                "project",
                project.slug,
                {"user": name, "role": Role.RESEARCHER},
            )


def _supersede(session: Session, project: Project, actor: str, permit_id: str) -> None:
    for old in session.execute(
        select(Permit).where(
            Permit.project_id == project.id, Permit.status == PermitStatus.ISSUED, Permit.id != permit_id
        )
    ).scalars():
        old.status = PermitStatus.SUPERSEDED
        audit.record(session, actor, AuditAction.PERMIT_SUPERSEDE, "permit", old.id, {"by": permit_id})
        for grant in session.execute(
            select(Grant).where(Grant.permit_id == old.id, Grant.status == GrantStatus.APPROVED)
        ).scalars():
            grant.status = GrantStatus.REVOKED
            grant.revoked_at = utcnow()
            audit.record(
                session,
                actor,
                AuditAction.GRANT_REVOKE,
                "grant",
                grant.id,
                {
                    "project": project.slug,
                    "dataset": grant.dataset.ref,
                    "reason": f"superseded by permit {permit_id}",
                },
            )


def approve_application(
    session: Session,
    actor: str,
    application_id: str,
    revision: int,
    decisions: Sequence[DatasetDecision],
    signer: Signer,
    *,
    issuer_name: str = "",
    note: str = "",
) -> Permit:
    """Approve with the custodian's terms per dataset and issue the signed data permit."""
    now = utcnow()
    application, custodian = _as_decider(session, actor, application_id, revision)
    _waiting(application)
    requested = {r["dataset"]: r for r in application.datasets}
    by_name = {d.dataset: d for d in decisions}
    if set(by_name) != set(requested) or len(by_name) != len(decisions):
        raise RegistryError(
            "decide every requested dataset once: approve it with its columns, or leave it out"
        )
    approved = [d for d in decisions if d.approve]
    if not approved:
        raise RegistryError("approve at least one dataset, or reject the application with a reason")
    for decision in approved:
        wanted = requested[decision.dataset]["columns"]
        extra = [
            f"{t}.{c}" for t, cols in decision.columns.items() for c in cols if c not in wanted.get(t, [])
        ]
        if extra:
            raise RegistryError(
                f"{decision.dataset}: {', '.join(extra)} were not asked for and cannot be approved"
            )
        if not any(decision.columns.values()):
            raise RegistryError(f"{decision.dataset}: approve at least one column, or leave the dataset out")
    project = _project_for(session, application, custodian, actor)
    _add_named(session, application, project, custodian, actor)
    permit = Permit(
        application_id=application.id,
        project_id=project.id,
        issued_by_id=custodian.id,
        issued_at=now,
        expires_at=project.expires_at,
        claims={},
        token="",
    )
    session.add(permit)
    session.flush()
    _supersede(session, project, actor, permit.id)
    terms = []
    for decision in approved:
        dataset = get_dataset(session, decision.dataset)
        grant = build_grant(
            project,
            dataset,
            {t: list(c) for t, c in decision.columns.items() if c},
            application.lead,
            expires_at=decision.expires_at,
            remove_opted_out=decision.remove_opted_out,
            pseudonymise=decision.pseudonymise,
            age_bands=decision.age_bands,
            date_shift_days=decision.date_shift_days,
            note=decision.conditions,
            now=now,
        )
        grant.status, grant.approved_by_id, grant.approved_at = GrantStatus.APPROVED, custodian.id, now
        grant.permit_id = permit.id
        session.add(grant)
        session.flush()
        audit.record(
            session,
            actor,
            AuditAction.GRANT_APPROVE,
            "grant",
            grant.id,
            {**grant_facts(grant), "permit": permit.id},
        )
        terms.append(
            {
                "grant": grant.id,
                "dataset": dataset.ref,
                "content_hash": dataset.content_hash,
                "columns": grant.columns,
                "pseudonymised": grant.pseudonymise,
                "opted_out_removed": grant.remove_opted_out,
                "age_bands": grant.age_bands,
                "date_shift_days": grant.date_shift_days,
                "expires_at": grant.expires_at.isoformat(),
                "conditions": decision.conditions,
            }
        )
    claims = {
        "permit": permit.id,
        "application": application.id,
        "version": application.version,
        "project": project.slug,
        "title": application.title,
        "purpose": application.purpose,
        "data_form": application.data_form,
        "holder": application.lead.username,
        "researchers": list(application.researchers),
        "datasets": terms,
        "issued_by": custodian.username,
        "issuer_name": issuer_name,
        "valid_from": now.isoformat(),
        "valid_until": project.expires_at.isoformat(),
    }
    permit.claims = claims
    permit.token = signer.sign(claims, validity=project.expires_at - now)
    if note.strip():
        _say(session, application, custodian, "approve", note)
    application.decided_at, application.decided_by_id = now, custodian.id
    audit.record(
        session,
        actor,
        AuditAction.PERMIT_ISSUE,
        "permit",
        permit.id,
        {"project": project.slug, "application": application.id, "grants": [t["grant"] for t in terms]},
    )
    _changed(
        session,
        application,
        actor,
        AuditAction.APPLICATION_APPROVE,
        ApplicationStatus.APPROVED,
        permit=permit.id,
    )
    return permit


# -- permits, as the people who work under them read them ----------------------------------------


def _may_read_permits(session: Session, viewer: str, project: Project) -> bool:
    try:
        _, who = acting(session, viewer, project)
    except NotAllowed:  # not a registered user
        return False
    return may_read_permits(who)


def project_permits(session: Session, viewer: str, slug: str) -> tuple[Project, list[Permit]]:
    """Project `slug` and its permits, newest first, for whoever may read them."""
    try:
        project = get_project(session, slug)
    except RegistryError:
        project = None
    if project is None or not _may_read_permits(session, viewer, project):
        raise NoSuchPermit(f"There is no project {slug!r} whose permits you can see.")
    permits = session.execute(
        select(Permit)
        .where(Permit.project_id == project.id)
        .options(joinedload(Permit.issued_by))
        .order_by(Permit.issued_at.desc(), Permit.id.desc())
    ).scalars()
    return project, list(permits)


def readable_permit(session: Session, viewer: str, permit_id: str) -> Permit:
    permit = session.get(Permit, permit_id) if is_opaque_id(permit_id, "p") else None
    if permit is None or not _may_read_permits(session, viewer, permit.project):
        raise NoSuchPermit(f"There is no permit {permit_id!r} that you can see.")
    return permit
