"""Access decisions for workspaces and egress, asked on every spawn and every request.

Only facts in the registry (and the published release on disk) count; nothing the researcher's
container says is trusted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.kernel.settings import Settings
from hub.registry.models import Grant, Membership, Project, User
from hub.registry.permissions import ProjectState, grant_is_active, project_is_open, project_problem
from hub.registry.vocabulary import MEMBER_ROLES, GrantStatus, Role

# Container resources, and what the guard lets the browser have: the largest file it may read
# (bytes) and the bytes per user per UTC day the workspace may send it.
DEFAULT_LIMITS: dict[str, Any] = {
    "mem": "2g",
    "cpu": 1.0,
    "pids": 256,
    "read_bytes": 2_000_000,
    "daily_bytes": 50_000_000,
    "jobs": 2,  # a project's jobs running at once (more wait in its queue)
    "job_seconds": 4 * 3600,  # a job's time limit
}


class AccessDenied(Exception):
    """No access; the message tells the person what to do about it."""


@dataclass(frozen=True)
class Limits:
    mem: str = DEFAULT_LIMITS["mem"]
    cpu: float = DEFAULT_LIMITS["cpu"]
    pids: int = DEFAULT_LIMITS["pids"]
    read_bytes: int = DEFAULT_LIMITS["read_bytes"]
    daily_bytes: int = DEFAULT_LIMITS["daily_bytes"]
    jobs: int = DEFAULT_LIMITS["jobs"]
    job_seconds: int = DEFAULT_LIMITS["job_seconds"]
    rerun_seconds: int | None = None  # None: the site's TRE_RERUN_SECONDS


@dataclass(frozen=True)
class WorkspacePermit:
    project_slug: str
    username: str
    release_dir: Path  # resolved releases/<n> directory, mounted read-only at /data
    release_number: int
    home_dir: Path
    limits: Limits = field(default_factory=Limits)


def project_limits(project: Project) -> Limits:
    merged = {**DEFAULT_LIMITS, **(project.limits or {})}
    return Limits(
        mem=str(merged["mem"]),
        cpu=float(merged["cpu"]),
        pids=int(merged["pids"]),
        read_bytes=int(merged["read_bytes"]),
        daily_bytes=int(merged["daily_bytes"]),
        jobs=int(merged["jobs"]),
        job_seconds=int(merged["job_seconds"]),
        rerun_seconds=int(merged["rerun_seconds"]) if merged.get("rerun_seconds") else None,
    )


def roles_in(session: Session, user: User, project: Project) -> set[Role]:
    """The user's memberships in the project, whatever the project's or user's state."""
    rows = session.execute(
        select(Membership.role).where(Membership.user_id == user.id, Membership.project_id == project.id)
    )
    return {Role(r) for r in rows.scalars()}


def project_roles(
    session: Session, username: str, project_slug: str, now: datetime | None = None
) -> set[Role]:
    """The user's roles in the project; empty if either is unknown, disabled, inactive or expired."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    project = session.execute(select(Project).where(Project.slug == project_slug)).scalar_one_or_none()
    if user is None or project is None or user.disabled:
        return set()
    if not project_is_open(project.status, project.expires_at, now):
        return set()
    return roles_in(session, user, project)


def active_grants(session: Session, project: Project, now: datetime | None = None) -> list[Grant]:
    grants = session.execute(
        select(Grant).where(Grant.project_id == project.id, Grant.status == GrantStatus.APPROVED)
    )
    return [g for g in grants.scalars() if grant_is_active(g.status, g.expires_at, now)]


def _current_release(settings: Settings, slug: str) -> tuple[Path, int]:
    link = settings.current_release(slug)
    if not link.is_symlink():
        raise AccessDenied(
            f"project {slug} has no published data release yet; ask a data custodian to run "
            f"`tre project provision {slug}`"
        )
    target = Path(os.readlink(link))
    try:
        number = int(target.name)
    except ValueError:
        raise AccessDenied(
            f"project {slug}'s current release link points to {target}, not releases/<number>; "
            f"ask a data custodian to re-run `tre project provision {slug}`"
        ) from None
    release_dir = link.resolve()
    # Whatever the link says, only a directory under this project's releases/ is ever mounted.
    if release_dir.parent != (settings.project_dir(slug) / "releases").resolve():
        raise AccessDenied(
            f"project {slug}'s current release link leads outside its releases folder; ask a data "
            f"custodian to re-run `tre project provision {slug}`"
        )
    if not release_dir.is_dir():
        raise AccessDenied(
            f"project {slug}'s current release {number} is missing on disk; ask a data custodian to "
            f"re-run `tre project provision {slug}`"
        )
    return release_dir, number


def released_grants(release_dir: Path) -> set[str]:
    """The grants whose data a published release holds (its manifest.json, written by provisioning)."""
    try:
        manifest = json.loads((release_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return set()
    return {g["id"] for g in manifest.get("grants", []) if isinstance(g, dict) and "id" in g}


def workspace_permit(
    session: Session,
    username: str,
    project_slug: str,
    settings: Settings,
    now: datetime | None = None,
) -> WorkspacePermit:
    """Everything the spawner needs to start `username`'s workspace for a project, or AccessDenied."""
    now = now or datetime.now(UTC)
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise AccessDenied(f"{username} is not a registered user; ask an administrator to run `tre user add`")
    if user.disabled:
        raise AccessDenied(f"the account {username} is disabled; contact an administrator")
    project = session.execute(select(Project).where(Project.slug == project_slug)).scalar_one_or_none()
    if project is None:
        raise AccessDenied(
            f"there is no project called {project_slug}; check the name with your project lead"
        )
    roles = roles_in(session, user, project)
    if not roles & MEMBER_ROLES:
        raise AccessDenied(
            f"{username} is not a researcher on project {project_slug}; ask the project lead to add you"
        )
    problem = project_problem(ProjectState(project.slug, project.status, project.expires_at), now)
    if problem:
        raise AccessDenied(f"{problem}, so its workspace cannot be opened; contact the project lead")
    grants = active_grants(session, project, now)
    if not grants:
        raise AccessDenied(
            f"project {project_slug} has no approved, unexpired dataset grant; the project lead must "
            "request one and a data custodian approve it"
        )
    release_dir, number = _current_release(settings, project_slug)
    withdrawn = sorted(released_grants(release_dir) - {g.id for g in grants})
    if withdrawn:
        # The release still holds data of a revoked or expired grant: it must be rebuilt first.
        raise AccessDenied(
            f"release {number} of {project_slug} still holds data of grant(s) {', '.join(withdrawn)}, "
            f"which are no longer active; ask a data custodian to run `tre project provision {project_slug}`"
        )
    return WorkspacePermit(
        project_slug=project_slug,
        username=username,
        release_dir=release_dir,
        release_number=number,
        home_dir=settings.home_dir(project_slug, username),
        limits=project_limits(project),
    )


@dataclass(frozen=True)
class ProjectSummary:
    slug: str
    title: str
    roles: frozenset[Role]
    expires_at: datetime
    can_open_workspace: bool  # researcher/lead with an approved grant (release may still be pending)


def user_projects(session: Session, username: str, now: datetime | None = None) -> list[ProjectSummary]:
    """Open projects the user belongs to, for the hub's home page (sorted by slug)."""
    now = now or datetime.now(UTC)
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None or user.disabled:
        return []
    rows = session.execute(
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == user.id)
        .order_by(Project.slug)
    )
    by_project: dict[int, tuple[Project, set[Role]]] = {}
    for project, role in rows:
        by_project.setdefault(project.id, (project, set()))[1].add(Role(role))
    out = []
    for project, roles in by_project.values():
        if not project_is_open(project.status, project.expires_at, now):
            continue
        workspace = bool(roles & MEMBER_ROLES) and bool(active_grants(session, project, now))
        out.append(
            ProjectSummary(project.slug, project.title, frozenset(roles), project.expires_at, workspace)
        )
    return out
