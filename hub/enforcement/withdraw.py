"""Taking access away, whichever interface asks: the registry change, then its effects at once.

Each operation commits its registry change first (from then on no workspace can open), then stops
the running workspaces that may no longer run (hub.enforcement.workspaces.enforce), and where data
is withdrawn rebuilds the project's release without it and deletes the older releases (audited by
provisioning). Closing a project also deletes its homes. A rebuild that fails leaves the registry
change in place and says so (WithdrawalIncomplete); the workspaces are stopped either way, since a
release that still holds withdrawn data no longer opens (hub.registry.access.workspace_permit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.enforcement.workspaces import StoppedWorkspace, enforce, purge_homes
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.provisioning import ProvisioningError, ReleaseResult, StepCallback, provision_project
from hub.registry import change_project_status, set_user_disabled
from hub.registry import remove_member as registry_remove_member
from hub.registry import revoke_grant as registry_revoke_grant
from hub.registry.vocabulary import Role, StatusChange


class WithdrawalIncomplete(Exception):
    """The registry change is made, but the data could not be rebuilt without the withdrawn part."""


@dataclass(frozen=True)
class Withdrawal:
    project: str | None
    release: ReleaseResult | None = None  # None when nothing was rebuilt
    stopped: list[StoppedWorkspace] = field(default_factory=list)
    purged_homes: list[str] = field(default_factory=list)


def _rebuild(
    settings: Settings, slug: str, actor: str, why: str, progress: StepCallback | None
) -> ReleaseResult:
    try:
        return provision_project(settings, slug, actor, progress=progress)
    except ProvisioningError as exc:
        raise WithdrawalIncomplete(
            f"{why}, but rebuilding {slug}'s release failed ({exc}); the old data is still on disk "
            f"until `tre project provision {slug}` succeeds"
        ) from exc


def revoke_grant(
    settings: Settings,
    actor: str,
    grant_id: str,
    reason: str = "",
    *,
    rebuild: bool = True,
    progress: StepCallback | None = None,
) -> Withdrawal:
    """Revoke the grant, rebuild its project's release without that data, stop what may not run."""
    with session_scope(settings) as s:
        slug = registry_revoke_grant(s, actor, grant_id, reason).project.slug
    trigger = f"grant {grant_id} revoked"
    try:
        release = (
            _rebuild(settings, slug, actor, f"grant {grant_id} is revoked", progress) if rebuild else None
        )
    finally:
        stopped = enforce(settings, actor, trigger, project=slug)
    return Withdrawal(slug, release, stopped)


def close_project(
    settings: Settings, actor: str, slug: str, reason: str = "", *, progress: StepCallback | None = None
) -> Withdrawal:
    """Close the project for good: its workspaces stop, its homes and released data are deleted."""
    with session_scope(settings) as s:
        change_project_status(s, actor, slug, StatusChange.CLOSE, reason)
    stopped = enforce(settings, actor, f"project {slug} closed", project=slug)
    homes = purge_homes(settings, actor, slug)
    release = _rebuild(settings, slug, actor, f"project {slug} is closed", progress)
    return Withdrawal(slug, release, stopped, homes)


def suspend_project(settings: Settings, actor: str, slug: str, reason: str = "") -> Withdrawal:
    with session_scope(settings) as s:
        change_project_status(s, actor, slug, StatusChange.SUSPEND, reason)
    return Withdrawal(slug, stopped=enforce(settings, actor, f"project {slug} suspended", project=slug))


def remove_member(
    settings: Settings, actor: str, slug: str, username: str, role: str = Role.RESEARCHER
) -> Withdrawal:
    with session_scope(settings) as s:
        registry_remove_member(s, actor, slug, username, role)
    stopped = enforce(settings, actor, f"{username} removed from {slug}", user=username, project=slug)
    return Withdrawal(slug, stopped=stopped)


def disable_user(settings: Settings, actor: str, username: str) -> Withdrawal:
    with session_scope(settings) as s:
        set_user_disabled(s, actor, username, True)
    return Withdrawal(None, stopped=enforce(settings, actor, f"user {username} disabled", user=username))
