"""Running workspaces that may no longer run: stopped through the hub, each stop audited.

A workspace keeps running only while its permit holds (member, enabled, project open and unexpired,
an active grant, a published release) and its data release still exists: a release deleted
because data was withdrawn leaves a running container with a mount of deleted files, so it stops.
The same check serves every trigger: a registry operation asks for it at once, the sweeper every
few seconds for what only time changes (expiries).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import docker
import docker.errors

from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.registry.access import AccessDenied, workspace_permit
from hub.workspaces.hub_api import HubAPI, HubDown


@dataclass(frozen=True)
class StoppedWorkspace:
    user: str
    project: str
    reason: str


def mounted_release(settings: Settings, user: str, project: str) -> int | None:
    """The release a running workspace was started with (its label), if Docker can tell."""
    name = f"{settings.container_prefix}-{user}--{project}"
    try:
        client = docker.from_env(timeout=10)
        if settings.engine == "swarm":  # the service carries the label (its task's container too)
            labels = client.api.inspect_service(name)["Spec"].get("Labels") or {}
        else:
            labels = client.containers.get(name).labels
    except (docker.errors.DockerException, docker.errors.NotFound):
        return None
    label = labels.get("org.tre.release", "")
    return int(label) if label.isdigit() else None


def _why_stop(settings: Settings, user: str, project: str) -> str | None:
    with session_scope(settings, readonly=True) as session:
        try:
            permit = workspace_permit(session, user, project, settings)
        except AccessDenied as exc:
            return str(exc)
    release = mounted_release(settings, user, project)
    if release is not None and not (settings.project_dir(project) / "releases" / str(release)).is_dir():
        return f"release {release} of {project} was withdrawn (release {permit.release_number} is current)"
    return None


def enforce(
    settings: Settings,
    actor: str,
    trigger: str,
    *,
    user: str | None = None,
    project: str | None = None,
    hub: HubAPI | None = None,
) -> list[StoppedWorkspace]:
    """Stop the running workspaces (of `user`, of `project`, or all) that may no longer run."""
    own = hub is None
    try:
        hub = hub or HubAPI.for_operator(settings)
    except HubDown:
        return []  # no hub, nothing running; every start re-checks the permit anyway
    stopped = []
    try:
        for server in hub.running():
            if (user and server.user != user) or (project and server.project != project):
                continue
            if server.starting:
                # Its start checks the permit before and again after the container runs, and
                # refuses with the reason; stopping it here would cut that short with a bare 500.
                continue
            reason = _why_stop(settings, server.user, server.project)
            if reason is None or not hub.stop(server.user, server.project):
                continue
            stopped.append(StoppedWorkspace(server.user, server.project, reason))
            with session_scope(settings) as s:
                audit.record(
                    s,
                    actor,
                    AuditAction.WORKSPACE_STOP,
                    "project",
                    server.project,
                    {"user": server.user, "reason": reason, "trigger": trigger},
                )
    except HubDown:
        pass  # no hub, nothing running; every start re-checks the permit anyway
    finally:
        if own:
            hub.close()
    return stopped


def purge_homes(settings: Settings, actor: str, project: str) -> list[str]:
    """Delete every home of a closed project (its workspaces stopped first); returns whose."""
    homes = settings.homes_dir / project
    users = sorted(p.name for p in homes.iterdir() if p.is_dir()) if homes.is_dir() else []
    if not homes.exists():
        return users
    size = sum(f.stat().st_size for f in homes.rglob("*") if f.is_file() and not f.is_symlink())
    shutil.rmtree(homes)
    with session_scope(settings) as s:
        audit.record(
            s, actor, AuditAction.PROJECT_HOMES_PURGE, "project", project, {"users": users, "bytes": size}
        )
    return users
