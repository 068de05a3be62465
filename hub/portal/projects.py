"""A project as its lead manages it in the portal: members and their workspaces.

Every change goes through the same operations as the `tre` command line, so the registry's rules
decide (hub.registry.permissions) and every change is audited: adding a researcher is
hub.registry.add_member, removing one is hub.enforcement.remove_member, which also stops her running
workspace at once. The page is the lead's and the administrators'; anyone else gets a 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from hub.enforcement.workspaces import mounted_release
from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.provisioning.builder import current_release
from hub.provisioning.runs import latest_run
from hub.registry import NotAllowed, get_project
from hub.registry.errors import RegistryError
from hub.registry.lookup import acting
from hub.registry.models import Membership, Permit, Project, User
from hub.registry.vocabulary import Role
from hub.workspaces.hub_api import HubAPI, HubDown

# The limits an administrator sets on the page, with what each means (hub.registry.projects).
LIMIT_FIELDS = {
    "mem": "Memory per workspace (e.g. 4g)",
    "cpu": "CPU cores per workspace",
    "pids": "Processes per workspace",
    "read_bytes": "Bytes one read may send to the browser",
    "daily_bytes": "Bytes a workspace may send to the browser per day (the byte budget)",
}
RULE_FIELDS = {
    "threshold": "Smallest cell count",
    "dominance_n": "Dominance: top n contributors",
    "dominance_k": "Dominance: may hold at most k %",
    "p_percent": "p % rule",
}


@dataclass(frozen=True)
class MemberRow:
    username: str
    role: str
    since: datetime
    workspace_since: datetime | None  # None: not running
    release: int | None


@dataclass(frozen=True)
class ProjectPage:
    slug: str
    title: str
    status: str
    expires_at: datetime
    lead: str
    members: list[MemberRow]
    hub_answered: bool  # False: workspace states unknown (the hub did not answer)
    permits: list[PermitRow]
    provisioning: dict[str, object] | None  # the latest provisioning run
    release: int | None  # the published release workspaces mount
    viewer_is_admin: bool
    limits: dict[str, object]
    rules: dict[str, object]  # disclosure-check overrides


@dataclass(frozen=True)
class PermitRow:
    id: str
    application: str
    status: str
    expires_at: datetime
    datasets: list[str]


class NotYourProject(NotAllowed):
    """Not a project this person leads: the same answer whether it exists or not (no enumeration)."""


def require_lead(settings: Settings, viewer: str, slug: str) -> None:
    """The project's lead or an administrator; anyone else learns nothing, not even that it exists."""
    with session_scope(settings, readonly=True) as s:
        _led_project(s, viewer, slug)


def _led_project(s: Session, viewer: str, slug: str) -> tuple[Project, User]:
    """require_lead inside a session already open: the project and the viewer, once checked."""
    try:
        project = get_project(s, slug)
        user, who = acting(s, viewer, project)
    except (RegistryError, NotAllowed):
        who = None
    if who is None or not (who.is_admin or Role.LEAD in who.project_roles):
        raise NotYourProject(
            f"There is no project {slug!r} that you lead. Leads manage their own projects here; "
            "an administrator sees every project."
        )
    return project, user


def _running(settings: Settings) -> dict[tuple[str, str], datetime | None] | None:
    try:
        with HubAPI.for_service() as hub:
            return {(r.user, r.project): r.started for r in hub.running()}
    except (HubDown, KeyError):  # KeyError: not running as a hub service (no API URL or token)
        return None


def project_page(settings: Settings, viewer: str, slug: str) -> ProjectPage:
    with session_scope(settings, readonly=True) as s:
        project, viewer_user = _led_project(s, viewer, slug)
        memberships = sorted(
            (m.role, m.user.username, m.created_at)
            for m in s.execute(
                select(Membership)
                .where(Membership.project_id == project.id)
                .options(joinedload(Membership.user))
            ).scalars()
        )
        permits = [
            PermitRow(
                p.id, p.application_id, p.status, p.expires_at, [d["dataset"] for d in p.claims["datasets"]]
            )
            for p in s.execute(
                select(Permit).where(Permit.project_id == project.id).order_by(Permit.issued_at.desc())
            ).scalars()
        ]
        title, status, expires_at, lead = (
            project.title,
            project.status,
            project.expires_at,
            project.lead.username,
        )
        limits, rules, viewer_is_admin = (
            dict(project.limits or {}),
            dict(project.sdc_config or {}),
            viewer_user.is_admin,
        )
    running = _running(settings)  # asked once the lead is checked, with no database transaction open
    members = []
    for role, username, since in memberships:
        up = running is not None and (username, slug) in running and role != Role.CHECKER
        members.append(
            MemberRow(
                username,
                role,
                since,
                (running or {}).get((username, slug)) if up else None,
                mounted_release(settings, username, slug) if up else None,
            )
        )
    return ProjectPage(
        slug,
        title,
        status,
        expires_at,
        lead,
        members,
        running is not None,
        permits,
        latest_run(settings, slug),
        current_release(settings.project_dir(slug)),
        viewer_is_admin,
        limits,
        rules,
    )


def stop_workspace(settings: Settings, actor: str, slug: str, username: str) -> bool:
    """The lead stops a member's workspace (her files stay); audited as workspace.stop."""
    require_lead(settings, actor, slug)
    try:
        with HubAPI.for_service() as hub:
            stopped = hub.stop(username, slug)
    except (HubDown, KeyError) as exc:
        raise HubDown("the hub does not answer; try again in a minute") from exc
    if stopped:
        with session_scope(settings) as s:
            audit.record(
                s,
                actor,
                AuditAction.WORKSPACE_STOP,
                "project",
                slug,
                {"user": username, "reason": "stopped by the project lead", "trigger": "portal"},
            )
    return stopped
