"""Taking data away: revoke a grant or close a project, then rebuild and purge at once.

The registry change commits first (from then on no workspace can open with the grant or project),
then the project's release is rebuilt without the withdrawn data and every older release is
deleted, audited by provisioning. A rebuild that fails leaves the registry change in place and
says so (WithdrawalIncomplete): the operator re-runs `tre project provision`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.provisioning import ProvisioningError, ReleaseResult, StepCallback, provision_project
from hub.registry import change_project_status
from hub.registry import revoke_grant as registry_revoke_grant
from hub.registry.vocabulary import StatusChange


class WithdrawalIncomplete(Exception):
    """The registry change is made, but the data could not be rebuilt without the withdrawn part."""


@dataclass(frozen=True)
class Withdrawal:
    project: str
    release: ReleaseResult | None  # None when the rebuild was deferred (rebuild=False)


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
    """Revoke the grant and rebuild its project's release without that data."""
    with session_scope(settings) as s:
        slug = registry_revoke_grant(s, actor, grant_id, reason).project.slug
    release = _rebuild(settings, slug, actor, f"grant {grant_id} is revoked", progress) if rebuild else None
    return Withdrawal(slug, release)


def close_project(
    settings: Settings, actor: str, slug: str, reason: str = "", *, progress: StepCallback | None = None
) -> Withdrawal:
    """Close the project for good; its release is rebuilt empty and every older one deleted."""
    with session_scope(settings) as s:
        change_project_status(s, actor, slug, StatusChange.CLOSE, reason)
    return Withdrawal(slug, _rebuild(settings, slug, actor, f"project {slug} is closed", progress))
