"""hub.access: who may open which workspace, decided from the registry and the published release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub import registry as reg
from hub.kernel.db import session_scope
from hub.registry.access import AccessDenied, project_roles, user_projects, workspace_permit
from tests.fixtures_registry import ADMIN, CHECKER, CUSTODIAN, LEAD, RESEARCHER, publish_release


def _permit(settings, user, project, now=None):
    with session_scope(settings) as s:
        return workspace_permit(s, user, project, settings, now=now)


def test_researcher_and_lead_get_a_permit(make_world):
    world = make_world()
    release = publish_release(world.settings, world.project, 3)
    for user in (RESEARCHER, LEAD):
        permit = _permit(world.settings, user, world.project)
        assert permit.release_dir == release.resolve()
        assert permit.release_number == 3
        assert permit.home_dir == world.settings.home_dir(world.project, user)
        assert (permit.limits.mem, permit.limits.cpu, permit.limits.pids) == ("2g", 1.0, 256)


def test_project_limits_override_defaults(make_world):
    world = make_world()
    publish_release(world.settings, world.project)
    with session_scope(world.settings) as s:
        reg.set_project_limits(s, ADMIN, world.project, mem="4g", pids=512)
    limits = _permit(world.settings, RESEARCHER, world.project).limits
    assert (limits.mem, limits.cpu, limits.pids) == ("4g", 1.0, 512)


@pytest.mark.parametrize("user", [CHECKER, CUSTODIAN, ADMIN, "nobody"])
def test_non_members_are_denied(make_world, user):
    world = make_world()
    publish_release(world.settings, world.project)
    with pytest.raises(AccessDenied):
        _permit(world.settings, user, world.project)


def test_unknown_project_denied(make_world):
    world = make_world()
    with pytest.raises(AccessDenied, match="no project called"):
        _permit(world.settings, RESEARCHER, "nope-project")


def test_no_release_denied_with_hint(make_world):
    world = make_world()
    with pytest.raises(AccessDenied, match="tre project provision"):
        _permit(world.settings, RESEARCHER, world.project)


def test_requested_grant_is_not_enough(make_world):
    world = make_world(grant="requested")
    publish_release(world.settings, world.project)
    with pytest.raises(AccessDenied, match="no approved, unexpired dataset grant"):
        _permit(world.settings, RESEARCHER, world.project)


def test_revoked_grant_denies(make_world):
    world = make_world()
    publish_release(world.settings, world.project)
    with session_scope(world.settings) as s:
        reg.revoke_grant(s, CUSTODIAN, world.grant_id)
    with pytest.raises(AccessDenied, match="no approved"):
        _permit(world.settings, RESEARCHER, world.project)


def test_expired_grant_denies(make_world):
    world = make_world()
    publish_release(world.settings, world.project)
    later = datetime.now(UTC) + timedelta(days=400)
    with pytest.raises(AccessDenied):
        _permit(world.settings, RESEARCHER, world.project, now=later)


@pytest.mark.parametrize("change", ["suspend", "close"])
def test_inactive_project_denies_everything(make_world, change):
    world = make_world()
    publish_release(world.settings, world.project)
    with session_scope(world.settings) as s:
        reg.change_project_status(s, ADMIN, world.project, change)
    with pytest.raises(AccessDenied, match=r"suspended|closed"):
        _permit(world.settings, RESEARCHER, world.project)
    with session_scope(world.settings) as s:
        assert project_roles(s, RESEARCHER, world.project) == set()
        assert project_roles(s, CHECKER, world.project) == set()
        assert user_projects(s, RESEARCHER) == []


def test_expired_project_gives_no_roles(make_world):
    world = make_world()
    later = datetime.now(UTC) + timedelta(days=366)
    with session_scope(world.settings) as s:
        assert project_roles(s, LEAD, world.project) == {"lead"}
        assert project_roles(s, LEAD, world.project, now=later) == set()
        assert user_projects(s, LEAD, now=later) == []


def test_disabled_user_denied(make_world):
    world = make_world()
    publish_release(world.settings, world.project)
    with session_scope(world.settings) as s:
        reg.set_user_disabled(s, ADMIN, RESEARCHER, True)
    with pytest.raises(AccessDenied, match="disabled"):
        _permit(world.settings, RESEARCHER, world.project)
    with session_scope(world.settings) as s:
        assert project_roles(s, RESEARCHER, world.project) == set()


def test_project_roles_and_user_projects(make_world):
    world = make_world()
    with session_scope(world.settings) as s:
        assert project_roles(s, RESEARCHER, world.project) == {"researcher"}
        assert project_roles(s, CHECKER, world.project) == {"checker"}
        assert project_roles(s, ADMIN, world.project) == set()
        assert project_roles(s, "ghost", world.project) == set()
        [summary] = user_projects(s, RESEARCHER)
        assert summary.slug == world.project and summary.can_open_workspace
        [summary] = user_projects(s, CHECKER)
        assert summary.roles == {"checker"} and not summary.can_open_workspace


def test_bad_release_link_denied(make_world):
    world = make_world()
    link = world.settings.current_release(world.project)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("releases/latest")
    with pytest.raises(AccessDenied, match="re-run"):
        _permit(world.settings, RESEARCHER, world.project)


def test_release_link_outside_the_project_is_refused(make_world, tmp_path):
    world = make_world()
    elsewhere = tmp_path / "7"
    elsewhere.mkdir()
    link = world.settings.current_release(world.project)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere)
    with pytest.raises(AccessDenied, match="outside its releases folder"):
        _permit(world.settings, RESEARCHER, world.project)
