"""Projects (the approved purpose, lead, expiry and limits), their status and their members."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from egress.sdc.model import RuleConfig
from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.registry.errors import RegistryError
from hub.registry.grants import revoke_lapsed_permits
from hub.registry.lookup import acting, get_project, get_user, project_state, require_aware, require_slug
from hub.registry.models import Membership, Project, User
from hub.registry.permissions import RegistryAction, require
from hub.registry.vocabulary import ProjectStatus, Role, StatusChange

MEM_RE = re.compile(r"^[1-9][0-9]*[kmg]$")


# Whole-number limits: (lowest, highest, what to write instead).
WHOLE_LIMITS: dict[str, tuple[int, int, str]] = {
    "pids": (16, 65536, "a whole number between 16 and 65536"),
    "read_bytes": (1000, 10**12, "a number of bytes of at least 1000"),
    "daily_bytes": (1000, 10**12, "a number of bytes of at least 1000"),
    "jobs": (0, 64, "a whole number between 0 and 64"),
    "job_seconds": (10, 7 * 86400, "between 10 seconds and 7 days"),
    "rerun_seconds": (10, 86400, "between 10 seconds and a day"),
}


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
        elif key in WHOLE_LIMITS:
            low, high, advice = WHOLE_LIMITS[key]
            if not low <= int(value) <= high:
                raise RegistryError(f"invalid {key} limit {value!r}: use {advice}")
            out[key] = int(value)
        else:
            raise RegistryError(f"unknown limit {key!r}: use mem, cpu, {', '.join(WHOLE_LIMITS)}")
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
    creator, who = acting(session, actor)
    require(RegistryAction.CREATE_PROJECT, who, target=lead)
    if require_aware(expires_at) <= (now or utcnow()):
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
    session.add(
        Membership(user_id=lead_user.id, project_id=project.id, role=Role.LEAD, added_by_id=creator.id)
    )
    session.flush()
    audit.record(
        session,
        actor,
        AuditAction.PROJECT_CREATE,
        "project",
        slug,
        {"title": title, "lead": lead, "expires_at": expires_at.isoformat(), "limits": project.limits},
    )
    return project


# change: (statuses it applies to, resulting status, past tense for messages, its audit action)
STATUS_TRANSITIONS: dict[StatusChange, tuple[set[ProjectStatus], ProjectStatus, str, AuditAction]] = {
    StatusChange.SUSPEND: (
        {ProjectStatus.ACTIVE},
        ProjectStatus.SUSPENDED,
        "suspended",
        AuditAction.PROJECT_SUSPEND,
    ),
    StatusChange.RESUME: (
        {ProjectStatus.SUSPENDED},
        ProjectStatus.ACTIVE,
        "resumed",
        AuditAction.PROJECT_RESUME,
    ),
    StatusChange.CLOSE: (
        {ProjectStatus.ACTIVE, ProjectStatus.SUSPENDED},
        ProjectStatus.CLOSED,
        "closed",
        AuditAction.PROJECT_CLOSE,
    ),
}


def change_project_status(session: Session, actor: str, slug: str, change: str, reason: str = "") -> Project:
    """suspend (active -> suspended), resume (suspended -> active) or close (-> closed, final)."""
    try:
        change = StatusChange(change)
    except ValueError:
        raise RegistryError(f"unknown status change {change!r}: use suspend, resume or close") from None
    project = get_project(session, slug)
    _, who = acting(session, actor, project)
    # Closing only takes access away, so a lead may end her own project; suspending is oversight.
    closing = change is StatusChange.CLOSE
    require(RegistryAction.CLOSE_PROJECT if closing else RegistryAction.CHANGE_PROJECT_STATUS, who)
    sources, target, done, action = STATUS_TRANSITIONS[change]
    if project.status not in sources:
        raise RegistryError(f"project {slug} is {project.status} and cannot be {done}")
    previous = project.status
    project.status = target
    audit.record(session, actor, action, "project", slug, {"from": previous, "reason": reason})
    if closing:
        revoke_lapsed_permits(session, actor, project, "its project was closed")
    return project


def set_project_limits(session: Session, actor: str, slug: str, **limits: Any) -> Project:
    project = get_project(session, slug)
    _, who = acting(session, actor, project)
    require(RegistryAction.SET_LIMITS, who)
    clean = _validate_limits(limits)
    if not clean:
        raise RegistryError("give at least one of --mem, --cpu, --pids")
    project.limits = {**(project.limits or {}), **clean}
    audit.record(session, actor, AuditAction.PROJECT_LIMITS, "project", slug, {"limits": project.limits})
    return project


def set_project_sdc_rules(
    session: Session, actor: str, slug: str, overrides: Mapping[str, Any], reset: bool = False
) -> Project:
    """Override the project's disclosure-check defaults (merged with earlier overrides unless reset)."""
    project = get_project(session, slug)
    _, who = acting(session, actor, project)
    require(RegistryAction.SET_SDC_RULES, who)
    merged = {**({} if reset else project.sdc_config or {}), **overrides}
    try:
        RuleConfig.from_dict(merged)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{exc}; see `tre project sdc-rules --help`") from None
    project.sdc_config = merged or None
    audit.record(session, actor, AuditAction.PROJECT_SDC_RULES, "project", slug, {"sdc_config": merged})
    return project


def set_reproduction_rule(session: Session, actor: str, slug: str, required: bool) -> Project:
    """Require (or stop requiring) that a re-run reproduces each output before it can be released;
    without it, both checkers must approve the file as an override. Administrators, audited."""
    project = get_project(session, slug)
    _, who = acting(session, actor, project)
    require(RegistryAction.SET_SDC_RULES, who)
    project.require_reproduction = required
    audit.record(session, actor, AuditAction.PROJECT_REPRODUCTION, "project", slug, {"required": required})
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
    role: str = Role.RESEARCHER,
    now: datetime | None = None,
) -> Membership:
    """Add a researcher (by the lead or an admin) or a checker (by an admin or custodian)."""
    if role not in (Role.RESEARCHER, Role.CHECKER):
        raise RegistryError(
            f"cannot add a {role!r}: members are researcher or checker (the lead is set at creation)"
        )
    role = Role(role)
    project = get_project(session, slug)
    adder, who = acting(session, actor, project)
    action = RegistryAction.ADD_RESEARCHER if role is Role.RESEARCHER else RegistryAction.ASSIGN_CHECKER
    require(action, who, project=project_state(project), target=username, now=now)
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
        AuditAction.MEMBER_ADD if role is Role.RESEARCHER else AuditAction.CHECKER_ASSIGN,
        "project",
        slug,
        {"user": username, "role": role},
    )
    return membership


def remove_member(
    session: Session, actor: str, slug: str, username: str, role: str = Role.RESEARCHER
) -> None:
    if role not in (Role.RESEARCHER, Role.CHECKER):
        raise RegistryError(f"cannot remove a {role!r}: members are researcher or checker")
    role = Role(role)
    project = get_project(session, slug)
    _, who = acting(session, actor, project)
    require(
        RegistryAction.REMOVE_RESEARCHER if role is Role.RESEARCHER else RegistryAction.REMOVE_CHECKER,
        who,
        project=project_state(project),
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
        AuditAction.MEMBER_REMOVE if role is Role.RESEARCHER else AuditAction.CHECKER_REMOVE,
        "project",
        slug,
        {"user": username, "role": role},
    )
